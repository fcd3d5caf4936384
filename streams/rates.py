"""The rates operators are judged on: one definition each, read by the API and the metrics."""

from __future__ import annotations

from dataclasses import dataclass

from .windows import Measure


@dataclass(frozen=True)
class Rate:
    """A share of one count in another, over the same window or period."""

    name: str  # in the API
    metric: str  # stem of the ``watchfloor_rolling_<metric>`` gauge
    numerator: Measure
    denominator: Measure
    definition: str  # shown with every API answer
    help: str  # the gauge's help text

    def of(self, counts: list[int]) -> float | None:
        """The rate of a count vector; None while the denominator is 0 (never 0 or NaN)."""
        den = counts[self.denominator]
        return counts[self.numerator] / den if den else None


RATES: tuple[Rate, ...] = (
    Rate(
        "rectification_rate",
        "rectification_ratio",
        Measure.HAZARDS_FOUND_RECTIFIED,
        Measure.HAZARDS_FOUND,
        "整改率. Of the hazards FOUND in the period, the share rectified so far (a cohort by "
        "found time: a rectification in May of an April hazard raises April's rate). "
        "null when no hazard was found.",
        "Of the hazards found in the window, the share rectified so far (整改率), 0-1",
    ),
    Rate(
        "clearance_rate",
        "clearance_ratio",
        Measure.CASES_FILED_CLEARED,
        Measure.CASES_FILED,
        "结案率. Of the cases FILED in the period, the share cleared so far (a cohort by "
        "filing time, never above 1; cases cleared in the period are the flow "
        "cases_cleared). null when none was filed.",
        "Of the cases filed in the window, the share cleared so far (结案率), 0-1",
    ),
    Rate(
        "dispute_resolution_rate",
        "dispute_resolution_ratio",
        Measure.DISPUTES_REPORTED_RESOLVED,
        Measure.DISPUTES_REPORTED,
        "化解率. Of the disputes REPORTED in the period, the share resolved so far (a cohort "
        "by report time; escalated ones are not resolved). null when none was reported.",
        "Of the disputes reported in the window, the share resolved so far (化解率), 0-1",
    ),
)
