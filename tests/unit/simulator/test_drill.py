"""The overdue drill: hazards that go overdue minutes after they are found."""

from __future__ import annotations

from datetime import timedelta

from streams.events import Kind
from streams.simulator.city import SimCity
from streams.simulator.config import SimConfig
from streams.simulator.drill import drill_deadlines
from streams.simulator.generator import generate_events

from .support import EPOCH, doc, ts_of


def test_overdue_drill_hazards_go_overdue_within_minutes(city: SimCity) -> None:
    drill_at = EPOCH + timedelta(hours=1)
    config = SimConfig(
        start=EPOCH, end=EPOCH + timedelta(hours=3), rate=0.2, overdue_drill=6, drill_at=drill_at
    )
    records = list(generate_events(city, config))
    planned = drill_deadlines(city, config)
    assert len(planned) == 6
    found = {str(doc(r)["subject"]): r for r in records if r.kind is Kind.HAZARD_FOUND}
    later = {str(doc(r)["subject"]) for r in records if r.kind is Kind.HAZARD_RECTIFIED}
    for district, subject, deadline in planned:
        rec = found[subject]
        assert rec.key == district.encode()
        assert ts_of(doc(rec)["data"]["deadline"]) == deadline  # type: ignore[index]
        assert 0 <= rec.ts - drill_at.timestamp() <= 120  # type: ignore[operator]
        assert 60 <= deadline - rec.ts <= 600  # type: ignore[operator]
        assert subject not in later
    assert any(doc(found[s])["data"]["major"] for _, s, _ in planned)  # type: ignore[index]
    assert len({d for d, _, _ in planned}) >= 3
