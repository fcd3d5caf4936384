"""Bulletins and the overdue list as documents: HTML (A4 print), Markdown and CSV, in zh or en."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from .errors import QueryError
from .overdue_list import COLUMNS
from .reference import Reference

LANGS = ("zh", "en")
TABLES = ("ranking", "districts", "overdue_major")

# Labels of every heading and column, (English, Chinese).
LABELS: dict[str, tuple[str, str]] = {
    "daily": ("Daily bulletin", "一天一通报"),
    "weekly": ("Weekly bulletin", "周通报"),
    "monthly": ("Monthly bulletin", "月通报"),
    "period": ("Period", "统计时段"),
    "cut_off": ("Cut-off", "截止时间"),
    "ranking": ("Ranking", "排名"),
    "rank": ("Rank", "名次"),
    "district": ("District", "区县"),
    "score": ("Score", "得分"),
    "previous_rank": ("Previous rank", "上期名次"),
    "movement": ("Movement", "升降"),
    "leaders": ("Commended (通报表扬)", "通报表扬"),
    "laggards": ("Criticised (通报批评)", "通报批评"),
    "unranked": ("Not ranked (no rate this period)", "本期无可计算比率, 不参与排名"),
    "districts": ("Figures by district", "各区县数据"),
    "overdue_major": (
        "Major hazards under listed supervision, overdue (挂牌督办)", "挂牌督办重大隐患(逾期)"
    ),
    "overdue_major_by_unit": ("Overdue major hazards by responsible unit", "逾期重大隐患责任单位"),
    "formula": ("Ranking formula", "排名公式"),
    "hazards_found": ("Hazards found", "排查隐患"),
    "hazards_rectified": ("of which rectified", "已整改"),
    "hazards_not_rectified": ("not rectified", "未整改"),
    "rectification_rate": ("Rectification rate (整改率)", "整改率"),
    "cases_filed": ("Cases filed", "立案"),
    "cases_cleared": ("of which cleared", "已结案"),
    "clearance_rate": ("Clearance rate (结案率)", "结案率"),
    "disputes_reported": ("Disputes reported", "排查矛盾纠纷"),
    "disputes_resolved": ("of which resolved", "已化解"),
    "dispute_resolution_rate": ("Resolution rate (化解率)", "化解率"),
    "patrols": ("Patrols", "巡逻"),
    "open_hazards": ("Open hazards", "未整改隐患"),
    "overdue_hazards": ("Overdue hazards", "逾期隐患"),
    "overdue_major_hazards": ("Overdue major hazards", "逾期重大隐患"),
    "subject": ("Hazard", "隐患编号"),
    "community": ("Community", "社区"),
    "category": ("Category", "类别"),
    "major": ("Major (listed)", "重大(挂牌)"),
    "responsible_unit": ("Responsible unit", "责任单位"),
    "found": ("Found at", "发现时间"),
    "deadline": ("Deadline", "整改期限"),
    "overdue_seconds": ("Overdue for", "逾期时长"),
    "overdue_days": ("Overdue (days)", "逾期天数"),
    "failed_visits": ("Failed look-back visits", "回头看未通过次数"),
    "count": ("Count", "数量"),
    "city": ("City total", "全市合计"),
    "yes": ("yes", "是"),
    "no": ("no", "否"),
    "none": ("none", "无"),
    "new": ("new", "新进"),
    "overdue_list": ("Overdue list (督办清单)", "督办清单"),
    "computed_at": ("Computed at", "生成时间"),
}

# The district columns of the bulletin, in order.
DISTRICT_COLUMNS = (
    "hazards_found",
    "hazards_rectified",
    "hazards_not_rectified",
    "rectification_rate",
    "cases_filed",
    "cases_cleared",
    "clearance_rate",
    "disputes_reported",
    "disputes_resolved",
    "dispute_resolution_rate",
    "patrols",
    "open_hazards",
    "overdue_hazards",
    "overdue_major_hazards",
)


def check_lang(lang: str) -> str:
    if lang not in LANGS:
        raise QueryError(f"'lang' must be zh or en, not {lang!r}.")
    return lang


def label(key: str, lang: str) -> str:
    en, zh = LABELS.get(key, (key, key))
    return zh if lang == "zh" else en


class Names:
    """Codes to names for people, from the reference data."""

    def __init__(self, reference: Reference, lang: str) -> None:
        self.ref = reference
        self.lang = lang

    def district(self, code: str) -> str:
        return self.ref.name("district", code, self.lang)

    def hazard(self, code: str | None) -> str:
        return "" if code is None else self.ref.name("hazard", code, self.lang)

    def unit(self, code: str | None) -> str:
        return "" if code is None else self.ref.name("unit", code, self.lang)

    def community(self, code: str | None) -> str:
        return "" if code is None else self.ref.name("community", code, self.lang)


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f} %"


def days(seconds: float) -> str:
    return f"{seconds / 86400:.1f}"


def movement(m: int | None, lang: str) -> str:
    if m is None:
        return label("new", lang)
    return f"▲{m}" if m > 0 else (f"▼{-m}" if m < 0 else "=")


def _cell(col: str, value: Any, lang: str) -> str:
    if col.endswith("_rate"):
        return percent(value)
    return "" if value is None else str(value)


def title(bulletin: Mapping[str, Any], city: str, lang: str) -> str:
    return f"{city} {label(bulletin['kind'], lang)} {bulletin['key']}"


# -- tables as rows (shared by CSV, Markdown and HTML) --------------------------------


def table_rows(bulletin: Mapping[str, Any], table: str, names: Names) -> list[list[str]]:
    """One of TABLES as a header row and data rows, labelled in ``names.lang``."""
    lang = names.lang
    if table == "ranking":
        rows = [[label(c, lang) for c in ("rank", "district", "score", "previous_rank",
                                          "movement")]]
        for r in bulletin["ranking"]:
            rows.append([str(r["rank"]), names.district(r["district"]), f"{r['score']:.2f}",
                         "" if r["previous_rank"] is None else str(r["previous_rank"]),
                         movement(r["movement"], lang)])
        return rows
    if table == "districts":
        rows = [[label("district", lang)] + [label(c, lang) for c in DISTRICT_COLUMNS]]
        for s in bulletin["districts"]:
            vals = {**s["figures"], **{k: s[k] for k in ("open_hazards", "overdue_hazards",
                                                         "overdue_major_hazards")}}
            rows.append([names.district(s["district"])]
                        + [_cell(c, vals[c], lang) for c in DISTRICT_COLUMNS])
        city = bulletin["city"]
        rows.append([label("city", lang)] + [_cell(c, city.get(c), lang)
                                             for c in DISTRICT_COLUMNS])
        return rows
    if table == "overdue_major":
        cols = ("district", "responsible_unit", "subject", "category", "community",
                "deadline", "overdue_days", "failed_visits")
        rows = [[label(c, lang) for c in cols]]
        for s in bulletin["districts"]:
            for m in s["overdue_major"]:
                rows.append([names.district(s["district"]), names.unit(m["responsible_unit"]),
                             m["subject"], names.hazard(m["category"]),
                             names.community(m["community"]), m["deadline"],
                             days(m["overdue_seconds"]), str(m["failed_visits"])])
        return rows
    raise QueryError(f"'table' must be one of {', '.join(TABLES)}, not {table!r}.")


def to_csv(rows: Iterable[Sequence[str]]) -> bytes:
    """CSV with a byte-order mark, so spreadsheet programs read the Chinese right."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return ("\ufeff" + buf.getvalue()).encode()


def bulletin_csv(bulletin: Mapping[str, Any], table: str, names: Names) -> bytes:
    return to_csv(table_rows(bulletin, table, names))


def overdue_csv(items: Iterable[Mapping[str, Any]], names: Names) -> bytes:
    lang = names.lang
    rows: list[list[str]] = [[label(c, lang) for c in COLUMNS]]
    for it in items:
        rows.append([
            it["subject"], names.district(it["district"]), names.community(it["community"]),
            names.hazard(it["category"]),
            label("yes" if it["major"] else "no", lang), names.unit(it["responsible_unit"]),
            it["found"] or "", it["deadline"], days(it["overdue_seconds"]),
            str(it["failed_visits"]),
        ])
    return to_csv(rows)


# -- Markdown (messaging groups) ------------------------------------------------------


def _md_table(rows: Sequence[Sequence[str]]) -> list[str]:
    def line(r: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in r) + " |"

    return [line(rows[0]), "|" + "---|" * len(rows[0]), *(line(r) for r in rows[1:])]


def _named(codes: Sequence[str], names: Names) -> str:
    return "、".join(names.district(c) for c in codes) if codes else label("none", names.lang)


def bulletin_markdown(bulletin: Mapping[str, Any], names: Names, city: str) -> bytes:
    lang = names.lang
    p = bulletin["period"]
    out = [
        f"# {title(bulletin, city, lang)}",
        "",
        f"{label('period', lang)}: {p['from']} to {p['to']}  ",
        f"{label('cut_off', lang)}: {bulletin['cut_off']}",
        "",
        f"**{label('leaders', lang)}**: {_named(bulletin['leaders'], names)}  ",
        f"**{label('laggards', lang)}**: {_named(bulletin['laggards'], names)}",
        "",
        f"## {label('ranking', lang)}",
        "",
        *_md_table(table_rows(bulletin, "ranking", names)),
        "",
    ]
    if bulletin["unranked"]:
        out += [f"{label('unranked', lang)}: {_named(bulletin['unranked'], names)}", ""]
    out += [f"## {label('districts', lang)}", "",
            *_md_table(table_rows(bulletin, "districts", names)), ""]
    majors = table_rows(bulletin, "overdue_major", names)
    out += [f"## {label('overdue_major', lang)}", ""]
    out += _md_table(majors) if len(majors) > 1 else [label("none", lang)]
    out += ["", f"{label('formula', lang)}: {bulletin['formula']['text']} "
            f"({', '.join(f'{k}={v:g}' for k, v in bulletin['formula']['weights'].items())})", ""]
    return "\n".join(out).encode()


# -- HTML (A4 print) ------------------------------------------------------------------

PRINT_CSS = """
@page { size: A4; margin: 14mm 12mm; }
body { font-family: "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", sans-serif;
       font-size: 10pt; color: #111; margin: 1.5em; }
h1 { font-size: 16pt; margin: 0 0 .3em; } h2 { font-size: 12pt; margin: 1.2em 0 .4em; }
table { border-collapse: collapse; width: 100%; margin-bottom: .6em; }
th, td { border: 1px solid #999; padding: 2px 4px; text-align: right; }
th { background: #eee; } td:first-child, th:first-child { text-align: left; }
td.text { text-align: left; }
.meta { color: #444; } .praise { color: #14632d; } .criticise { color: #8a1414; }
@media print { body { margin: 0; } h2 { break-after: avoid; } tr { break-inside: avoid; }
               a { color: inherit; text-decoration: none; } }
"""


def _html_table(rows: Sequence[Sequence[str]], table_id: str, text_cols: int = 1) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in rows[0])
    body = []
    for r in rows[1:]:
        cells = "".join(
            f'<td class="text">{escape(c)}</td>' if i < text_cols else f"<td>{escape(c)}</td>"
            for i, c in enumerate(r)
        )
        body.append(f"<tr>{cells}</tr>")
    return (f'<table id="{table_id}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def bulletin_html(bulletin: Mapping[str, Any], names: Names, city: str) -> bytes:
    lang = names.lang
    p = bulletin["period"]
    head = title(bulletin, city, lang)
    majors = table_rows(bulletin, "overdue_major", names)
    parts = [
        f'<!doctype html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head>'
        f'<meta charset="utf-8"><link rel="icon" href="data:,"><title>{escape(head)}</title>'
        f"<style>{PRINT_CSS}</style>"
        "</head><body>",
        f"<h1>{escape(head)}</h1>",
        f'<p class="meta">{escape(label("period", lang))}: {escape(p["from"])} / '
        f'{escape(p["to"])} · {escape(label("cut_off", lang))}: {escape(bulletin["cut_off"])}</p>',
        f'<p class="praise"><b>{escape(label("leaders", lang))}</b>: '
        f'{escape(_named(bulletin["leaders"], names))}</p>',
        f'<p class="criticise"><b>{escape(label("laggards", lang))}</b>: '
        f'{escape(_named(bulletin["laggards"], names))}</p>',
        f'<h2>{escape(label("ranking", lang))}</h2>',
        _html_table(table_rows(bulletin, "ranking", names), "ranking", text_cols=2),
    ]
    if bulletin["unranked"]:
        parts.append(f'<p class="meta">{escape(label("unranked", lang))}: '
                     f'{escape(_named(bulletin["unranked"], names))}</p>')
    parts += [
        f'<h2>{escape(label("districts", lang))}</h2>',
        _html_table(table_rows(bulletin, "districts", names), "districts"),
        f'<h2>{escape(label("overdue_major", lang))}</h2>',
        _html_table(majors, "overdue-major", text_cols=6) if len(majors) > 1
        else f"<p>{escape(label('none', lang))}</p>",
        f'<p class="meta">{escape(label("formula", lang))}: '
        f'{escape(bulletin["formula"]["text"])} '
        f'({escape(", ".join(f"{k}={v:g}" for k, v in bulletin["formula"]["weights"].items()))})'
        "</p></body></html>",
    ]
    return "".join(parts).encode()
