"""Benchmarks: run by hand (python -m tests.benchmarks.<name>), not part of the test run."""
