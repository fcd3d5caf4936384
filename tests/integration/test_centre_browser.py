"""The command-centre page in a real browser (Debian's chromium through Playwright).

Each view loads without a console error and shows the API's figures; a filter narrows
the overdue list; the bulletin prints to an A4 PDF whose text has the ranking. With
WATCHFLOOR_SCREENSHOTS=docs the screenshots go to docs/screenshots/ (committed, shown in
the README); otherwise to the test's temporary folder.
"""

from __future__ import annotations

import io
import os
import shutil
import unicodedata
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from streams.bulletin import due, parse_cutoff
from tests.conftest import ROOT, need

from .harness import Cluster, WorkerProcess, scripted_stream, wait_for
from .test_centre_scale_out import DISTRICTS, hazards

pytestmark = [pytest.mark.broker, pytest.mark.slow]

TZ = ZoneInfo("Asia/Shanghai")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    need(found is not None, "Debian's chromium is not installed (deploy/local/setup.sh test)")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def served(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[WorkerProcess, list[str]]]:
    """A worker with three weeks of figures and two daily bulletins cut."""
    cluster = Cluster(kafka_bootstrap)
    cluster.create_topics()
    worker = WorkerProcess(cluster, tmp_path_factory.mktemp("browser"), "page",
                           WATCHFLOOR_BULLETIN_START_DELAY_SECONDS="3600").start()
    try:
        worker.wait_ready()
        now = datetime.now(TZ)
        # The latest day whose bulletin is due (its cut-off passed) and the day before.
        last = next(p for kind, p in due(now, TZ, parse_cutoff("08:00")) if kind == "daily")
        docs, _ = hazards(now)
        for back in (0, 1):  # 20 hours of each of the two days
            more, _ = scripted_stream(DISTRICTS, 120, last.end - timedelta(days=back),
                                      seed=7 + back, tag=f"-d{back}")
            docs += more
        docs.sort(key=lambda d: d["time"])
        n = cluster.publish(docs)

        def counted() -> bool:
            m = worker.metrics()
            seen = sum(v for (name, _), v in m.items()
                       if name in ("watchfloor_events_processed_total",
                                   "watchfloor_duplicate_events_total"))
            return seen >= n

        wait_for(counted, timeout=120, what="the page's figures counted")
        keys = [(last.start - timedelta(days=back)).date().isoformat() for back in (1, 0)]
        for key in keys:
            status, body = worker.post(f"/api/v1/bulletins/{key}", b"", timeout=180)
            assert status == 201, body
        yield worker, keys
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "playwright is not installed (pip install -e '.[dev]')")
        raise
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()


def shots() -> Path:
    if os.environ.get("WATCHFLOOR_SCREENSHOTS") == "docs":
        out = ROOT / "docs" / "screenshots"
    else:
        out = Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / "watchfloor-screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_command_centre_page(browser: Any, served: tuple[WorkerProcess, list[str]]) -> None:
    worker, keys = served
    latest = keys[-1]
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1360, "height": 900}, locale="zh-CN")
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    out = shots()

    def load(hash_: str) -> None:
        page.goto(f"{worker.url}/centre/?lang=zh#{hash_}")
        page.wait_for_selector("body[data-loaded=true]", timeout=20000)
        assert not page.query_selector("#view .error"), page.inner_text("#view")

    def cells(selector: str) -> list[list[str]]:
        return [[c.inner_text().strip() for c in row.query_selector_all("td")]
                for row in page.query_selector_all(f"{selector} tbody tr")]

    # Ranking: the latest bulletin's order and scores, and the live figures per district.
    load("/ranking")
    _, b = worker.get(f"/api/v1/bulletins/{latest}")
    assert page.get_attribute("#latest", "data-key") == latest
    assert [(row[0], row[2]) for row in cells("#ranking-table")] == [
        (str(r["rank"]), f"{r['score']:.2f}") for r in b["ranking"]]
    _, now = worker.get("/api/v1/districts")
    for d in now["districts"]:
        row = page.query_selector(f"#now-table tr[data-district='{d['district']}']")
        for figure in ("open_hazards", "overdue_hazards", "overdue_major_hazards", "open_cases"):
            assert row.query_selector(f"td[data-figure={figure}]").inner_text() == str(
                d["current"][figure]), (d["district"], figure)
    assert "金水区" in page.inner_text("#now-table")
    page.screenshot(path=str(out / "ranking.png"), full_page=True)

    # Overdue list: its total and rows are the API's; a filter narrows both.
    load("/overdue")
    _, api = worker.get("/api/v1/overdue?limit=100")
    assert page.inner_text("#overdue-total") == str(api["total"])
    rows = page.query_selector_all("#overdue-table tbody tr")
    assert [r.get_attribute("data-subject") for r in rows] == [
        it["subject"] for it in api["items"]]
    page.screenshot(path=str(out / "overdue.png"), full_page=False)
    page.select_option("#overdue-filters select[name=district]", "jinshui")
    page.select_option("#overdue-filters select[name=major]", "true")
    page.click("#overdue-filters button[type=submit]")
    page.wait_for_function("location.hash.includes('major=true')")
    page.wait_for_selector("body[data-loaded=true]")
    _, narrowed = worker.get("/api/v1/overdue?district=jinshui&major=true&limit=100")
    got = [r.get_attribute("data-subject")
           for r in page.query_selector_all("#overdue-table tbody tr")]
    assert got == [it["subject"] for it in narrowed["items"]] and 0 < len(got) < len(rows)
    assert page.inner_text("#overdue-total") == str(narrowed["total"])

    # Bulletin archive and one bulletin.
    load("/bulletins")
    assert [r.get_attribute("data-key") for r in
            page.query_selector_all("#archive-table tbody tr")] == sorted(keys, reverse=True)
    page.screenshot(path=str(out / "bulletins.png"), full_page=True)
    load(f"/bulletin/{latest}")
    by = {s["district"]: s for s in b["districts"]}
    for row in page.query_selector_all("#bulletin-districts tbody tr"):
        d = row.get_attribute("data-district")
        assert row.query_selector("td[data-figure=hazards_found]").inner_text() == str(
            by[d]["figures"]["hazards_found"])
        rate = by[d]["figures"]["rectification_rate"]
        assert row.query_selector("td[data-figure=rectification_rate]").inner_text() == (
            "—" if rate is None else f"{rate * 100:.1f} %")
    page.screenshot(path=str(out / "bulletin.png"), full_page=True)

    # District drill-down.
    load("/district/jinshui")
    _, dj = worker.get("/api/v1/districts/jinshui")
    for figure in ("open_hazards", "overdue_hazards", "overdue_major_hazards", "open_cases"):
        card = page.query_selector(f"#district-cards [data-figure={figure}] .value")
        assert card.inner_text() == str(dj["current"][figure]), figure
    hazard_rows = page.query_selector_all("#district-hazards tbody tr")
    assert len(hazard_rows) == min(50, dj["open_hazards_page"]["total"])
    page.screenshot(path=str(out / "district.png"), full_page=True)

    # English labels come from the reference data too.
    page.goto(f"{worker.url}/centre/?lang=en#/ranking")
    page.wait_for_selector("body[data-loaded=true]")
    assert "Jinshui District" in page.inner_text("#now-table")

    # The bulletin printed to an A4 PDF has the ranking in its text.
    from pypdf import PdfReader

    printed = browser.new_page()
    printed.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    for lang, heading, first in (("zh", "排名", "name_zh"), ("en", "Ranking", "name")):
        printed.goto(f"{worker.url}/api/v1/bulletins/{latest}?format=html&lang={lang}")
        pdf = printed.pdf(format="A4", print_background=True)
        reader = PdfReader(io.BytesIO(pdf))
        width, height = (float(x) for x in reader.pages[0].mediabox.upper_right)
        assert abs(width - 595) < 2 and abs(height - 842) < 2  # A4 in points
        # PDF fonts map some ideographs to Kangxi radicals (⽩ for 白): NFKC folds them.
        text = unicodedata.normalize("NFKC", "".join(p.extract_text() for p in reader.pages))
        compact = text.replace(" ", "").replace("\n", "")
        top = b["ranking"][0]
        top_name = _district_name(top["district"], first)
        assert heading.replace(" ", "") in compact, text[:300]
        assert f"1{top_name}{top['score']:.2f}".replace(" ", "") in compact, text[:600]
    printed.close()
    page.close()
    assert errors == [], errors


def _district_name(code: str, field: str) -> str:
    import json

    city = json.loads((ROOT / "seeds" / "reference" / "city.json").read_text())
    return next(str(d[field]) for d in city["districts"] if d["code"] == code)
