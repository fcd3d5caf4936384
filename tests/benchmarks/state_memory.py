"""Memory per remembered lifecycle, at 1,000 districts: ``python -m tests.benchmarks.state_memory``.

Each district gets closed cases, disputes and hazards (the lifecycles kept for look-back
visits and retries, docs/design.md "Lifecycle memory") and their event identities; the
script prints the bytes each remembered lifecycle costs, measured by tracemalloc (Python
objects) and by the process's resident set (everything, allocator included).
"""

from __future__ import annotations

import argparse
import gc
import resource
import subprocess
import sys
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from streams.events import Event, Kind, event_identity
from streams.state import DistrictState

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 1, tzinfo=TZ).timestamp()
H = 3600.0


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def fill(st: DistrictState, per_district: int, span_days: float) -> int:
    """Closed lifecycles spread over ``span_days``; returns how many."""
    d = st.district
    n = 0
    step = span_days * 86400 / per_district
    for i in range(per_district):
        t = T0 + i * step
        kind = i % 3
        sid = f"{d}-{i}"

        def ev(k: Kind, ts: float, sid: str = sid, **kw: object) -> Event:
            eid = f"{sid}-{k.name}"
            return Event(kind=k, id=eid, source=f"/{d}/app", district=d, subject=sid, ts=ts,
                         identity=event_identity(f"/{d}/app", eid), **kw)  # type: ignore[arg-type]

        if kind == 0:
            # Codes are shared strings, as the validator makes them (sys.intern).
            st.apply(ev(Kind.HAZARD_FOUND, t, category="fire", deadline=t + 3 * 86400,
                        major=False, community=sys.intern(f"{d}-c1"),
                        unit=sys.intern(f"{d}-fire")))
            st.apply(ev(Kind.HAZARD_RECTIFIED, t + 2 * H))
        elif kind == 1:
            st.apply(ev(Kind.CASE_FILED, t, category="theft", community=sys.intern(f"{d}-c1")))
            st.apply(ev(Kind.CASE_CLEARED, t + 5 * H))
        else:
            st.apply(ev(Kind.DISPUTE_REPORTED, t, category="neighbourhood",
                        unit=sys.intern(f"{d}-med")))
            st.apply(ev(Kind.DISPUTE_RESOLVED, t + 9 * H))
        n += 1
    return n


def build(districts: int, per_district: int, span_days: float) -> tuple[int, int, float]:
    """(bytes of resident set added, lifecycles remembered, seconds) for one build."""
    gc.collect()
    base = rss_bytes()
    t = time.perf_counter()
    states = {}
    for i in range(districts):
        st = DistrictState(f"d{i:04d}", TZ)
        fill(st, per_district, span_days)
        states[st.district] = st
    took = time.perf_counter() - t
    gc.collect()
    remembered = sum(len(s.hazards) + len(s.cases) + len(s.disputes) for s in states.values())
    return rss_bytes() - base, remembered, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--districts", type=int, default=1000)
    parser.add_argument("--per-district", type=int, default=600)
    parser.add_argument("--span-days", type=float, default=55.0,
                        help="event time the lifecycles spread over (inside the 60-day memory)")
    parser.add_argument("--part", choices=["full", "half"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        n = args.per_district if args.part == "full" else args.per_district // 2
        rss, remembered, took = build(args.districts, n, args.span_days)
        print(f"{rss} {remembered} {took}")
        return
    # Two builds in fresh processes, the same event-time span (so the same buckets): the
    # difference is what the extra lifecycles, their subjects and identities cost.
    runs = {}
    for part in ("half", "full"):
        out = subprocess.run(
            [sys.executable, "-m", "tests.benchmarks.state_memory", "--part", part,
             "--districts", str(args.districts), "--per-district", str(args.per_district),
             "--span-days", str(args.span_days)],
            capture_output=True, text=True, check=True,
        ).stdout.split()
        runs[part] = (int(out[0]), int(out[1]), float(out[2]))
    (rss_h, n_h, _), (rss_f, n_f, took) = runs["half"], runs["full"]
    per = (rss_f - rss_h) / (n_f - n_h)
    print(f"districts {args.districts:,}; {n_f:,} remembered lifecycles over "
          f"{args.span_days:g} days of event time (built in {took:.1f} s)")
    print(f"resident set: {rss_f / 2**20:,.0f} MiB with {n_f:,}, {rss_h / 2**20:,.0f} MiB with "
          f"{n_h:,}")
    print(f"each remembered lifecycle (subject, closings index, identities): {per:,.0f} B")
    print(f"at 1,000 districts x 100 closed lifecycles a day x 60 days: "
          f"{per * 1000 * 100 * 60 / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()
