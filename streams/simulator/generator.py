"""The pure generator: a simulated city's records in publish order, the same for the same seed."""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections.abc import Iterator

from ..errors import ReferenceDataError
from ..events import Kind, Stream
from .agenda import ACCIDENT, BAD, DUP, EMIT, LATE, START, Agenda
from .city import SimCity
from .config import SimConfig
from .drill import drill_events
from .encoder import Encoder
from .ids import Subjects
from .lifecycles import Lifecycles
from .models import NATURAL_STARTS, cumulative, natural_rate
from .records import Intent, SimRecord
from .rejects import Rejects
from .rhythms import DAY, RHYTHM_DISPUTES, RHYTHM_HAZARDS, RHYTHM_INCIDENTS, RHYTHM_PATROLS

LIFECYCLES = ("case", "dispute", "hazard", "patrol")
ACCIDENT_CATEGORIES = (
    "construction", "construction", "road_traffic", "road_traffic", "industrial", "industrial",
    "fire", "hazardous_chemicals", "special_equipment", "mining", "water_transport",
    "fireworks", "other",
)
RHYTHMS = (RHYTHM_INCIDENTS, RHYTHM_DISPUTES, RHYTHM_HAZARDS, RHYTHM_PATROLS)


def generate_events(city: SimCity, config: SimConfig) -> Iterator[SimRecord]:
    """Yield the records of a simulated city, in publish order, deterministically.

    Pure: no I/O, no clock, no global random state. The same city and config give the
    same records, byte for byte. Lifecycles (cases, disputes, hazards, patrols) start as
    Poisson arrivals with a day/night rhythm and emit their later transitions after
    realistic delays; each valid record may be followed by a duplicate, a late or a
    malformed record according to the configured shares.

    Memory grows with the number of open lifecycles: about the start rate times the
    mean lifetime (days for hazards), a few hundred bytes each.
    """
    config.check()
    return Generator(city, config).run()


class Generator:
    """Runs the agenda: starts lifecycles, publishes their events, adds the bad records.

    One random stream feeds every draw, in the order the agenda comes due; that order
    is what makes a seed reproduce its records byte for byte.
    """

    def __init__(self, city: SimCity, config: SimConfig) -> None:
        self.city = city
        self.cfg = config
        self.rng = random.Random(config.seed)
        self.enc = Encoder(city)
        self.local = self.enc.local
        self.agenda = Agenda()
        self.watermark: dict[tuple[int, Stream], float] = {}
        subjects = self.subjects = Subjects(config.tag)
        # Accidents draw from their own random stream (see SimConfig).
        self.accident_rng = random.Random(f"accidents-{config.seed}")
        self.accident_rate = config.accidents_per_district_day * len(city.districts) / DAY
        self.lifecycles = Lifecycles(city, self.local, self.rng, subjects, self.agenda)
        self.rejects = Rejects(
            city,
            self.enc,
            self.rng,
            subjects,
            tuple(config.malformed_reasons),
            config.grace_seconds,
            self.watermark,
        )
        total = sum(d.weight for d in city.districts)
        if total <= 0:
            raise ReferenceDataError("The districts' populations add up to zero.")
        self.district_draw = cumulative([d.weight for d in city.districts])
        # What follows a valid record: thresholds on one draw, so that the valid ones
        # make up what the shares leave over.
        valid_share = 1 - config.late_share - config.duplicate_share - config.malformed_share
        self.p_dup = config.duplicate_share / valid_share
        self.p_late = self.p_dup + config.late_share / valid_share
        self.p_bad = self.p_late + config.malformed_share / valid_share
        # Mean start rate per lifecycle (starts/s, city-wide, over a day), live and
        # before the live part.
        history = config.history_rate if config.history_rate is not None else config.rate
        self.mean_rate = self._start_rates(config.rate * valid_share, total)
        self.history_mean_rate = self._start_rates(history * valid_share, total)
        self.live_from = config.live_from.timestamp() if config.live_from is not None else -math.inf

    def _start_rates(self, rate: float, weight: float) -> list[float]:
        scale = rate / natural_rate(self.city)
        return [NATURAL_STARTS[name] * weight * scale / DAY for name in LIFECYCLES]

    def run(self) -> Iterator[SimRecord]:
        cfg = self.cfg
        start = cfg.start.timestamp()
        end = cfg.end.timestamp() if cfg.end is not None else math.inf
        limit = cfg.max_records if cfg.max_records is not None else math.inf
        agenda = self.agenda
        for i in range(len(LIFECYCLES)):
            agenda.push(self.next_start(i, start), START, i)
        if self.accident_rate > 0:
            agenda.push(start + self.accident_rng.expovariate(self.accident_rate), ACCIDENT, None)
        for h, data in drill_events(self.city, cfg, self.local):
            agenda.schedule(
                float(h.found), h.district, Kind.HAZARD_FOUND, h.subject, h.found, data, ""
            )
        starters = self.lifecycles.starters
        heappop = heapq.heappop
        draw = self.district_draw
        random_ = self.rng.random
        splice = self.enc.splice
        envelopes = self.enc.envelopes()
        watermark = self.watermark
        valid = Intent.VALID
        emitted = 0
        while emitted < limit:
            if not agenda.heap and not agenda.refill():
                return
            entry = heappop(agenda.heap)
            at = entry[0]
            if at >= end:
                return
            op = entry[2]
            if op == START:
                i = entry[3]
                agenda.push(self.next_start(i, at), START, i)
                starters[i](bisect.bisect(draw, random_()), int(at))
                continue
            if op == ACCIDENT:
                self.start_accident(at)
                continue
            if op == EMIT:
                _, _, _, di, kind, subject, ts, data, suffix = entry
                e = envelopes[di][kind]
                value = splice(e, subject, suffix, ts, data)
                rec = SimRecord(at, e.stream, e.key, value, valid, None, kind, float(ts))
                if kind is not Kind.ACCIDENT_REPORTED:
                    wkey = (di, e.stream)
                    if ts > watermark.get(wkey, -math.inf):
                        watermark[wkey] = ts
                    self.follow_up(at, di, rec)
            elif op == DUP:
                rec = entry[3]._replace(at=at, intent=Intent.DUPLICATE, reason="duplicate")
            elif op == LATE:
                rec = self.rejects.late(at, *entry[3])
            else:
                rec = self.rejects.malformed(at, entry[3])
            emitted += 1
            yield rec

    def start_accident(self, at: float) -> None:
        """A work-safety accident, reported minutes later, sometimes revised days later."""
        rng = self.accident_rng
        self.agenda.push(at + rng.expovariate(self.accident_rate), ACCIDENT, None)
        di = bisect.bisect(self.district_draw, rng.random())
        subject = self.subjects.new("ac", self.city.districts[di].code)
        deaths = rng.choices((0, 1, 2, 3), (0.72, 0.22, 0.04, 0.02))[0]
        injuries = rng.choices((0, 1, 2, 4), (0.5, 0.3, 0.15, 0.05))[0]
        loss = int(rng.lognormvariate(12.5, 1.2))  # median about 270,000 yuan
        data = {
            "category": rng.choice(ACCIDENT_CATEGORIES),
            "deaths": deaths,
            "serious_injuries": injuries,
            "direct_loss_yuan": loss,
        }
        t = int(at)
        # Reported within minutes, as publishers sync (the first report is the accident's
        # own time); a revision carries the time it was made.
        self.agenda.schedule(t + 60 + rng.random() * 600, di, Kind.ACCIDENT_REPORTED,
                             subject, t, data, "-1")
        if injuries and rng.random() < 0.3:  # an injured person died; the loss was assessed
            later = t + int(DAY * (1 + 4 * rng.random()))
            revised = dict(data, deaths=deaths + 1, serious_injuries=injuries - 1,
                           direct_loss_yuan=int(loss * 1.3))
            self.agenda.schedule(float(later), di, Kind.ACCIDENT_REPORTED, subject, later,
                                 revised, "-2")

    def follow_up(self, at: float, di: int, rec: SimRecord) -> None:
        """Perhaps schedule a duplicate of a valid record, or a late or malformed one."""
        u = self.rng.random()
        if u >= self.p_bad:
            return
        if u < self.p_dup:
            self.agenda.push(at + 5 + self.rng.random() * 1200, DUP, rec)
        elif u < self.p_late:
            self.agenda.push(at + 1 + self.rng.random() * 120, LATE, (di, rec.stream))
        else:
            self.agenda.push(at + 1 + self.rng.random() * 120, BAD, di)

    def next_start(self, i: int, t: float) -> float:
        """The next arrival of a Poisson process whose rate is constant within a local hour.

        Exact, not thinned: an arrival that would fall past the hour is redrawn from the
        hour's end at the next hour's rate (the exponential forgets how long it waited).
        """
        rhythm = RHYTHMS[i]
        local = self.local
        live_from = self.live_from
        while True:
            mean = self.mean_rate[i] if t >= live_from else self.history_mean_rate[i]
            nxt = t + self.rng.expovariate(mean * rhythm[local.hour(t)])
            boundary = local.next_hour(t)
            if t < live_from < boundary:
                boundary = live_from
            if nxt < boundary:
                return nxt
            t = boundary
