"""Subject ids: a tag keeps two runs apart."""

from __future__ import annotations

from streams.simulator.city import SimCity

from .support import doc, run


def test_tag_keeps_two_runs_apart(city: SimCity) -> None:
    a = {str(doc(r)["subject"]) for r in run(city, tag="r1", max_records=500)}
    b = {str(doc(r)["subject"]) for r in run(city, tag="r2", max_records=500)}
    assert a and b and not a & b
