"""Watchfloor: public-safety event stream processing on Kafka and Faust."""

__version__ = "0.1.0"
