"""Figures of repeated runs (best and spread), the targets of issue #16, and the printed table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def spread(values: Sequence[float], *, higher_is_better: bool = True) -> dict[str, Any]:
    """Best, worst and the spread between them (as % of the best) of repeated runs."""
    if not values:
        return {}
    best = max(values) if higher_is_better else min(values)
    worst = min(values) if higher_is_better else max(values)
    return {
        "best": best,
        "worst": worst,
        "spread_pct": round(abs(best - worst) / best * 100, 1) if best else 0.0,
        "values": list(values),
    }


def _fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f} MB"


def _gc(g: dict[str, Any], seconds: float) -> str:
    if not g:
        return "-"
    return (
        f"{g['seconds_total']:.1f} s in {sum(g['collections']):,} collections "
        f"({g['seconds_total'] / seconds:.0%} of {seconds:.0f} s); "
        f"{g['full_collections']} full, longest pause {g['pause_seconds_max']:.2f} s, "
        f"{g['pauses_over_10ms']} pauses > 10 ms"
    )


def render_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(out)


IMPLS = ("limit", "naive", "peer", "kstreams", "watchfloor")
TITLES = {
    "limit": "limit (raw aiokafka + orjson)",
    "naive": "naive (Faust agent, tables)",
    "peer": "peer (Quix Streams 3.x)",
    "kstreams": "kstreams (Kafka Streams, Java)",
    "watchfloor": "watchfloor worker",
}


def throughput_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for impl in IMPLS:
        runs = report["runs"].get(impl)
        if not runs:
            continue
        s = report["summary"][impl]
        best = max(runs, key=lambda r: r["events_per_second"])
        eps_cpu = [
            r["events"] / r["cpu_processing_seconds"]
            for r in runs
            if r.get("cpu_processing_seconds")
        ]
        rows.append(
            [
                TITLES[impl],
                _fmt(s["events_per_second"]["best"]),
                f"{s['events_per_second']['spread_pct']:.0f}%",
                str(len(runs)),
                f"{min(r['events'] for r in runs):,}" + ("" if best["complete"] else "*"),
                _fmt(max(eps_cpu) if eps_cpu else None),
                _mb(max(r.get("peak_rss_bytes") or 0 for r in runs)),
                "yes" if all(r["exact"] for r in runs) else "NO",
                " ".join(f"{r['loadavg_before'][0]:.1f}" for r in runs),
            ]
        )
    return rows


def render(report: dict[str, Any]) -> str:
    p = report["params"]
    m = report["machine"]
    data = (
        f"{p['events']:,} events, {p['districts']:,} districts, "
        if p["parts"] != ["plateau"]
        else "the plateau part alone, "
    )
    parts = [
        f"Watchfloor benchmark: {data}{p['partitions']} partitions per topic, "
        f"broker {p['bootstrap']}",
        f"machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, "
        f"Python {m['python']}, Kafka {m['kafka']}; load at start {m['loadavg_start']}",
    ]
    code = report.get("code") or {}
    if code:
        dirty = code.get("uncommitted_streams_files") or []
        parts.append(
            f"code: commit {code.get('commit')}"
            + (f" plus uncommitted changes to {', '.join(dirty)}" if dirty else "")
        )
    env = p.get("worker_env") or {}
    if env:
        parts.append("worker settings: " + ", ".join(f"{k}={v}" for k, v in sorted(env.items())))
    parts += [""]
    rows = throughput_rows(report)
    if rows:
        parts.append(
            render_table(
                [
                    "implementation",
                    "events/s (best)",
                    "spread",
                    "runs",
                    "events",
                    "events/CPU-s",
                    "peak RSS",
                    "exact",
                    "load (1 min)",
                ],
                rows,
            )
        )
        if any(not r["complete"] for r in report["runs"].get("naive", [])):
            parts.append("* time-boxed: counted a prefix of the data, checked against its truth")
        parts.append("")
    ratios = report.get("ratios") or {}
    if ratios:
        parts.append(
            "ratios, events/s (best vs best): "
            + ", ".join(f"watchfloor/{k} = {v:.2f}" for k, v in ratios.items())
        )
        cpu = report.get("cpu_ratios") or {}
        if cpu:
            parts.append(
                "ratios, events per CPU-second (best vs best): "
                + ", ".join(f"watchfloor/{k} = {v:.2f}" for k, v in cpu.items())
            )
        parts.append("")
    wf = report.get("watchfloor") or {}
    lines = []
    if wf.get("peak_rss_bytes"):
        lines.append(["peak RSS of the worker (catch-up, 1 worker)", _mb(wf["peak_rss_bytes"])])
    for r in report["runs"].get("watchfloor", []):
        b = r.get("batches") or {}
        if b.get("batches"):
            lines.append(
                [
                    "catch-up batches",
                    f"{b['batches']:,} batches, {b['events_per_batch']:,.0f} events each, "
                    f"{b['mean_batch_seconds'] * 1000:,.0f} ms mean; counted in "
                    f"{r['seconds']:.1f} s, state written {r['state_written_seconds']:.1f} s, "
                    f"committed {r['committed_seconds']:.1f} s; start-up "
                    f"{r['startup_seconds']:.1f} s",
                ]
            )
        if r.get("gc"):
            lines.append(["  garbage collector during it", _gc(r["gc"], r["seconds"])])
    for ph in wf.get("latency", []):
        lat = ph["latency_seconds"]
        lines.append(
            [
                f"event-to-metric latency at {ph['produced']['events_per_second']:,.0f} events/s "
                f"for {ph['produced']['seconds']:.0f}s",
                f"p50 {_fmt(lat['p50'], ' s', 3)}, p99 {_fmt(lat['p99'], ' s', 3)}, "
                f"max {_fmt(lat['max'], ' s', 3)} ({ph['markers_seen']}/{ph['markers_sent']} "
                f"markers)",
            ]
        )
        achieved = ph["produced"]["events_per_second"]
        if ph.get("passes", 1) > 1 or achieved < 0.95 * ph["rate_target"]:
            lines.append(
                [
                    "  load",
                    f"{ph['produced']['records']:,} records ({ph.get('passes', 1)} passes of "
                    f"{ph.get('pool_records') or ph['produced']['records']:,}), "
                    f"{achieved:,.0f} of {ph['rate_target']:,.0f} events/s"
                    + (
                        " NOT sustained by the producer"
                        if achieved < 0.95 * ph["rate_target"]
                        else ""
                    )
                    + f"; producer up to {ph['produced']['max_behind_seconds']:.1f} s behind "
                    "its schedule",
                ]
            )
        clear = ph.get("latency_without_scrape_seconds") or {}
        if clear.get("markers") and clear["markers"] != ph["markers_seen"]:
            lines.append(
                [
                    "  markers not in flight during a scrape",
                    f"p50 {_fmt(clear['p50'], ' s', 3)}, p99 {_fmt(clear['p99'], ' s', 3)} "
                    f"({clear['markers']} markers)",
                ]
            )
        b = ph.get("batches") or {}
        if b.get("batches"):
            lines.append(
                [
                    "  batches during it",
                    f"{b['batches']:,} batches, {b['events_per_batch']:,.0f} events each, "
                    f"{b['mean_batch_seconds'] * 1000:,.0f} ms mean, "
                    f"p99 <= {_fmt(b['p99_batch_seconds_at_most'], ' s', 2)}"
                    + (
                        f"; queued {b['mean_wait_seconds'] * 1000:,.0f} ms mean before counting"
                        if b.get("mean_wait_seconds") is not None
                        else ""
                    ),
                ]
            )
        if ph.get("gc"):
            lines.append(
                ["  garbage collector during it", _gc(ph["gc"], ph["produced"]["seconds"])]
            )
        lines.append(
            [
                "  backlog",
                (
                    f"drained {_fmt(ph['drain_after_produce_seconds'], ' s', 1)} after the load "
                    "stopped; "
                    if ph["drain_after_produce_seconds"] is not None
                    else "NOT committed within 300 s of the load's end"
                    + (
                        f" ({sum(ph['uncommitted_at_check'].values()):,} records past the "
                        "committed offsets at the check); "
                        if ph.get("uncommitted_at_check")
                        else "; "
                    )
                )
                + f"max lag {_fmt(ph.get('max_consumer_lag_seconds_of_input'), ' s', 1)} of input",
            ]
        )
        r = ph["rss"]
        if r:
            lines.append(
                [
                    "  RSS during it / worker CPU share",
                    f"{r['first_mb']:.0f} -> {r['last_mb']:.0f} MB (max {r['max_mb']:.0f}, "
                    f"{r['growth_kb_per_record'] or 0:.2f} KB per record), "
                    f"CPU {r['cpu_share']:.0%}",
                ]
            )
        su = ph["scrapes_under_load"]
        if su["count"]:
            lines.append(
                [
                    "  /metrics scrape under that load",
                    f"median {_fmt(su['median_seconds'], ' s', 3)}, "
                    f"max {_fmt(su['max_seconds'], ' s', 3)} ({su['count']} scrapes)",
                ]
            )
    for rs in wf.get("restarts", []):
        lines.append(
            [
                f"restart after {'SIGKILL' if rs['how'] == 'kill' else 'SIGTERM'}, "
                f"{rs['districts']} districts",
                f"/ready {rs['ready_seconds']:.2f} s, figures exact {rs['correct_seconds']:.2f} s "
                f"(state rebuild {rs['worker_recovery_seconds'] or 0:.2f} s, "
                f"{rs['changelog_records']:,} changelog records, "
                f"RSS {_mb(rs['rss_after_ready_bytes'])})",
            ]
        )
    sc = wf.get("scrape")
    if sc:
        lines.append(
            [
                f"/metrics scrape, idle, {sc['series']:,} series ({sc['bytes'] / 2**20:.1f} MB)",
                f"median {sc['median_seconds']:.3f} s, max {sc['max_seconds']:.3f} s "
                f"({sc['count']} scrapes)",
            ]
        )
    pl = report.get("plateau")
    if pl:
        lines += plateau_rows(pl)
    if lines:
        parts.append(render_table(["watchfloor", "measured"], lines))
        parts.append("")
    targets = report.get("targets") or []
    if targets:
        parts.append(
            render_table(
                ["target", "measured", "met"],
                [[t["target"], t["measured"], t["met"]] for t in targets],
            )
        )
        parts.append("")
    for name, prof in (report.get("profiles") or {}).items():
        threads = prof["threads"]
        parts.append(
            f"profile of the worker, {name} ({prof['samples']:,} samples at 100/s; busy: "
            + ", ".join(f"{t} {v['busy_share']:.0%}" for t, v in threads.items())
            + ")"
        )
        rows = [
            [t, x["part"], f"{x['share_of_busy']:.1%}"]
            for t, v in threads.items()
            for x in v["parts"]
            if x["share_of_busy"] >= 0.01
        ]
        parts.append(render_table(["thread", "part", "share of its busy time"], rows))
        main = next(iter(threads.values()), None)
        if main:
            parts.append(
                "busiest functions (self time, first thread): "
                + "; ".join(
                    f"{x['function']} {x['share_of_busy']:.0%}" for x in main["top_functions"][:8]
                )
            )
        parts.append("")
    return "\n".join(parts)


def plateau_rows(pl: dict[str, Any]) -> list[list[str]]:
    """The plateau part: RSS at each edge of event time, the trends and the verdict."""
    rows = [
        [
            f"plateau: {pl['districts']} districts, {pl['days']:g} days of event time",
            f"{pl['records']:,} records counted in {pl['counted_seconds']:.0f} s "
            f"({pl['event_days_per_second']:.1f} days/s), exact: "
            + ("yes" if pl["exact"] else "NO"),
        ]
    ]
    for name, cp in pl["checkpoints"].items():
        if cp:
            rows.append([f"  RSS at {name}", f"{cp['rss_mb']:.0f} MB (day {cp['event_day']:g})"])
    for key, name in (
        ("trend_before_retention_edge", "before the retention edge"),
        ("trend_after_edges", "after the edges"),
    ):
        t = pl.get(key)
        if t:
            rows.append(
                [
                    f"  RSS trend {name}",
                    f"{t['slope_mb_per_100_days']:+.1f} MB per 100 days over {t['days']:g} days "
                    f"({t['min_mb']:.0f}-{t['max_mb']:.0f} MB)",
                ]
            )
    rows.append(["  verdict", f"{pl['verdict']}: {pl['rule']}"])
    return rows


def targets(report: dict[str, Any]) -> list[dict[str, str]]:
    """Each target of issue #16 with the measured figure and whether it is met."""
    out: list[dict[str, str]] = []

    def add(target: str, measured: str, met: bool | None) -> None:
        verdict = "-" if met is None else ("yes" if met else "NO")
        out.append({"target": target, "measured": measured, "met": verdict})

    ratios = report.get("ratios") or {}
    cpu_ratios = report.get("cpu_ratios") or {}
    for impl, want in (("limit", 0.5), ("peer", 5.0), ("kstreams", 0.5)):
        if impl in ratios:
            cpu = cpu_ratios.get(impl)
            per_cpu = f" ({cpu:.2f} x per CPU-second)" if cpu else ""
            # Kafka Streams is judged on both, as the issue asks for both ratios.
            met = ratios[impl] >= want and (impl != "kstreams" or (cpu or 0.0) >= want)
            add(f"watchfloor >= {want:g} x {impl}", f"{ratios[impl]:.2f} x{per_cpu}", met)
    wf_runs = report["runs"].get("watchfloor") or []
    if wf_runs:
        best = report["summary"]["watchfloor"]["events_per_second"]["best"]
        add("catch-up events/s on one worker (for the record)", f"{best:,.0f} events/s", None)
        exact = all(r["exact"] for runs in report["runs"].values() for r in runs)
        add(
            "counts exact (every implementation, every run)",
            "exact" if exact else "NOT exact",
            exact,
        )
    wf = report.get("watchfloor") or {}
    for ph in wf.get("latency", []):
        p99 = ph["latency_seconds"]["p99"]
        rate = ph["produced"]["events_per_second"]
        want = ph.get("target_p99_seconds", 2.0)
        ok = p99 is not None and p99 <= want and rate >= 0.95 * ph["rate_target"]
        add(
            f"p99 event-to-metric <= {want:g} s at {ph['rate_target']:,.0f} events/s "
            f"for {ph['seconds_target']:g} s",
            f"p99 {_fmt(p99, ' s', 3)} at {rate:,.0f} events/s",
            ok,
        )
    for rs in wf.get("restarts", []):
        add(
            f"restart ({'SIGKILL' if rs['how'] == 'kill' else 'SIGTERM'}) with "
            f"{rs['districts']} districts correct in <= 3 s",
            f"{rs['correct_seconds']:.2f} s",
            rs["correct_seconds"] <= 3.0,
        )
    if wf.get("peak_rss_bytes"):
        peak = wf["peak_rss_bytes"]
        districts = report["params"]["districts"]
        add(f"peak RSS <= 350 MB ({districts:,} districts)", _mb(peak), peak <= 350 * 2**20)
    for ph in wf.get("latency", []):
        r = ph["rss"]
        if r:
            # Not judged: every live record opens or moves a lifecycle that the state keeps
            # for 7 days of event time, so RSS grows during the phase by design. Shown is
            # how much it grows per record.
            add(
                "RSS flat at steady state (not judged: see growth per record)",
                f"{r['first_mb']:.0f} -> {r['last_mb']:.0f} MB, "
                f"{r['growth_kb_per_record'] or 0:.2f} KB per record",
                None,
            )
    pl = report.get("plateau")
    if pl:
        after = pl.get("trend_after_edges") or {}
        add(
            f"RSS flat once event time has passed the {pl['days']:g}-day run's edges "
            f"({pl['districts']} districts)",
            f"{after.get('growth_mb', '-')} MB over the last {after.get('days', '-')} days "
            f"(allowed {pl['allowed_growth_mb']} MB): {pl['verdict']}",
            None if pl["verdict"] == "not judged" else pl["verdict"] == "flat",
        )
    sc = wf.get("scrape")
    if sc:
        add(
            f"/metrics scrape, idle ({report['params']['districts']:,} districts, max; "
            "for the record)",
            f"{sc['max_seconds']:.3f} s",
            None,
        )
    for ph in wf.get("latency", []):
        su = ph["scrapes_under_load"]
        if su["count"]:
            judged = ph["rate_target"] <= 20_000  # the issue sets it at 20,000 events/s
            add(
                f"/metrics scrape <= 0.25 s under {ph['rate_target']:,.0f} events/s (max)"
                + ("" if judged else "; for the record"),
                f"{su['max_seconds']:.3f} s",
                su["max_seconds"] <= 0.25 if judged else None,
            )
    return out
