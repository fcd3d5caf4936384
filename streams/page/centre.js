/* The command-centre page: plain JavaScript, no build step, no CDN; reads the worker's API. */
"use strict";

const UI = {
  title: ["Command centre", "指挥中心"],
  nav_ranking: ["Ranking", "排名"],
  nav_overdue: ["Overdue list", "督办清单"],
  nav_bulletins: ["Bulletins", "通报"],
  drill: ["District…", "区县…"],
  latest: ["Latest bulletin", "最新通报"],
  no_bulletin: ["No bulletin has been published yet; the first is cut at the cut-off time.",
                "尚未发布通报; 到截止时间自动生成。"],
  now: ["Now, by district", "当前各区县情况"],
  rank: ["Rank", "名次"], district: ["District", "区县"], score: ["Score", "得分"],
  previous_rank: ["Previous", "上期"], movement: ["Movement", "升降"], new: ["new", "新进"],
  leaders: ["Commended (通报表扬)", "通报表扬"], laggards: ["Criticised (通报批评)", "通报批评"],
  none: ["none", "无"], unranked: ["Not ranked", "不参与排名"],
  period: ["Period", "统计时段"], cut_off: ["Cut-off", "截止时间"],
  hazards_found: ["Hazards found", "排查隐患"], hazards_rectified: ["rectified", "已整改"],
  hazards_not_rectified: ["not rectified", "未整改"], rectification_rate: ["整改率", "整改率"],
  cases_filed: ["Cases filed", "立案"], cases_cleared: ["cleared", "已结案"],
  clearance_rate: ["结案率", "结案率"], disputes_reported: ["Disputes", "矛盾纠纷"],
  disputes_resolved: ["resolved", "已化解"], dispute_resolution_rate: ["化解率", "化解率"],
  patrols: ["Patrols", "巡逻"], patrols_completed: ["Patrols", "巡逻"],
  open_hazards: ["Open hazards", "未整改隐患"], overdue_hazards: ["Overdue", "逾期隐患"],
  overdue_major_hazards: ["Overdue major", "逾期重大隐患"], open_cases: ["Open cases", "未结案件"],
  open_disputes: ["Open disputes", "未化解纠纷"],
  hours_since_last_patrol: ["Hours since last patrol", "距上次巡逻(小时)"],
  subject: ["Hazard", "隐患编号"], community: ["Community", "社区"], category: ["Category", "类别"],
  major: ["Major", "重大"], responsible_unit: ["Responsible unit", "责任单位"],
  found: ["Found", "发现时间"], deadline: ["Deadline", "整改期限"],
  overdue_for: ["Overdue (days)", "逾期(天)"], failed_visits: ["Failed look-backs", "回头看未通过"],
  any: ["any", "全部"], yes: ["yes", "是"], no: ["no", "否"], apply: ["Filter", "筛选"],
  more: ["More", "加载更多"], csv: ["CSV", "导出CSV"], total: ["overdue in all", "项逾期"],
  incomplete: ["Incomplete: some workers did not answer for", "数据不完整, 未响应的区县:"],
  archive: ["Bulletin archive", "通报存档"], kind: ["Kind", "类型"],
  daily: ["Daily", "日通报"], weekly: ["Weekly", "周通报"], monthly: ["Monthly", "月通报"],
  print: ["Print / PDF (A4)", "打印 / PDF (A4)"], markdown: ["Markdown", "Markdown"],
  figures: ["Figures by district", "各区县数据"],
  overdue_major: ["Overdue major hazards (挂牌督办)", "挂牌督办重大隐患(逾期)"],
  current: ["Now", "当前"], rolling: ["Rolling windows", "滚动统计"], window: ["Window", "时段"],
  open_list: ["Open hazards", "未整改隐患清单"], district_overdue: ["Its overdue list", "本区督办清单"],
  as_of: ["As of", "截至"], formula: ["Formula", "排名公式"], top: ["First", "第一名"],
};
const RATES = ["rectification_rate", "clearance_rate", "dispute_resolution_rate"];

let cfg = null;
let lang = "zh";

function t(key) {
  const pair = UI[key];
  return pair ? pair[lang === "zh" ? 1 : 0] : key;
}

function name(kind, code) {
  if (code === null || code === undefined) return "";
  const pair = cfg.names[kind + ":" + code];
  if (!pair) return code;
  return (lang === "zh" ? pair[1] || pair[0] : pair[0] || pair[1]) || code;
}

function esc(text) {
  return String(text === null || text === undefined ? "" : text)
    .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function pct(rate) { return rate === null || rate === undefined ? "—" : (rate * 100).toFixed(1) + " %"; }
function days(seconds) { return (seconds / 86400).toFixed(1); }
function when(iso) { return iso ? iso.replace("T", " ").slice(0, 16) : ""; }

async function api(path) {
  const resp = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error || resp.status);
  return body;
}

function table(id, heads, rows, textCols) {
  const isText = (i) => (Array.isArray(textCols) ? textCols.includes(i) : i < textCols);
  const th = heads.map((h, i) => `<th class="${isText(i) ? "text" : ""}">${esc(h)}</th>`).join("");
  return `<table id="${id}"><thead><tr>${th}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

function movement(m) {
  if (m === null || m === undefined) return `<span>${esc(t("new"))}</span>`;
  if (m > 0) return `<span class="up">▲${m}</span>`;
  if (m < 0) return `<span class="down">▼${-m}</span>`;
  return "=";
}

function districtLink(code) {
  return `<a href="#/district/${encodeURIComponent(code)}">${esc(name("district", code))}</a>`;
}

function namedList(codes) {
  return codes.length ? codes.map(districtLink).join("、") : esc(t("none"));
}

// -- views ---------------------------------------------------------------------------

function rankingTable(b) {
  const rows = b.ranking.map((r) => `<tr data-district="${esc(r.district)}">` +
    `<td>${r.rank}</td><td class="text">${districtLink(r.district)}</td>` +
    `<td class="score">${r.score.toFixed(2)}</td>` +
    `<td>${r.previous_rank === null ? "" : r.previous_rank}</td><td>${movement(r.movement)}</td></tr>`);
  return table("ranking-table", [t("rank"), t("district"), t("score"), t("previous_rank"),
                                 t("movement")], rows, 2);
}

function bulletinHead(b) {
  return `<p class="meta">${esc(t(b.kind))} ${esc(b.key)} · ${esc(t("period"))}: ` +
    `${esc(when(b.period.from))} – ${esc(when(b.period.to))} · ${esc(t("cut_off"))}: ` +
    `${esc(when(b.cut_off))}</p>` +
    `<p class="praise"><b>${esc(t("leaders"))}</b>: ${namedList(b.leaders)}</p>` +
    `<p class="criticise"><b>${esc(t("laggards"))}</b>: ${namedList(b.laggards)}</p>`;
}

async function viewRanking(el) {
  const [archive, now] = await Promise.all([api("/api/v1/bulletins"), api("/api/v1/districts")]);
  let html = `<h2>${esc(t("latest"))}</h2>`;
  if (archive.bulletins.length) {
    const key = archive.bulletins[0].key;
    const b = await api(`/api/v1/bulletins/${encodeURIComponent(key)}`);
    html += `<div id="latest" data-key="${esc(key)}">` + bulletinHead(b) + rankingTable(b) +
      `<p class="links"><a href="#/bulletin/${encodeURIComponent(key)}">${esc(b.key)} →</a></p></div>`;
  } else {
    html += `<p id="latest" class="meta">${esc(t("no_bulletin"))}</p>`;
  }
  const cols = ["open_hazards", "overdue_hazards", "overdue_major_hazards", "open_cases",
                "open_disputes"];
  const rows = now.districts.map((d) => `<tr data-district="${esc(d.district)}">` +
    `<td class="text">${districtLink(d.district)}</td>` +
    cols.map((c) => `<td data-figure="${c}">${d.current[c]}</td>`).join("") +
    `<td data-figure="rectification_rate_28d">${pct(d.rolling["28d"].rectification_rate)}</td></tr>`);
  html += `<h2>${esc(t("now"))}</h2>` + table("now-table", [t("district"), ...cols.map(t),
    t("rectification_rate") + " 28d"], rows, 1);
  if (now.incomplete) html += `<p class="error">${esc(t("incomplete"))} ${esc(now.incomplete.join(", "))}</p>`;
  el.innerHTML = html;
}

function overdueRows(items) {
  return items.map((it) => `<tr data-subject="${esc(it.subject)}" class="${it.major ? "major" : ""}">` +
    `<td class="text">${esc(it.subject)}</td><td class="text">${districtLink(it.district)}</td>` +
    `<td class="text">${esc(name("community", it.community))}</td>` +
    `<td class="text">${esc(name("hazard", it.category))}</td>` +
    `<td>${esc(it.major ? t("yes") : t("no"))}</td>` +
    `<td class="text">${esc(name("unit", it.responsible_unit))}</td>` +
    `<td>${esc(when(it.found))}</td><td>${esc(when(it.deadline))}</td>` +
    `<td data-figure="overdue_days">${days(it.overdue_seconds)}</td><td>${it.failed_visits}</td></tr>`);
}

function options(values, selected, label) {
  return `<option value="">${esc(t("any"))}</option>` + values.map((v) =>
    `<option value="${esc(v)}"${v === selected ? " selected" : ""}>${esc(label(v))}</option>`).join("");
}

async function viewOverdue(el, params) {
  const q = new URLSearchParams(params);
  q.set("limit", "100");
  const body = await api("/api/v1/overdue?" + q.toString());
  const filters = `<form class="filters" id="overdue-filters">
    <label>${esc(t("district"))}<select name="district">${options(cfg.districts, params.get("district") || "", (c) => name("district", c))}</select></label>
    <label>${esc(t("category"))}<select name="category">${options(cfg.hazard_categories, params.get("category") || "", (c) => name("hazard", c))}</select></label>
    <label>${esc(t("major"))}<select name="major">${options(["true", "false"], params.get("major") || "", (v) => t(v === "true" ? "yes" : "no"))}</select></label>
    <label>${esc(t("responsible_unit"))}<input name="unit" value="${esc(params.get("unit") || "")}" size="22"></label>
    <label>${esc(t("community"))}<input name="community" value="${esc(params.get("community") || "")}" size="16"></label>
    <button type="submit">${esc(t("apply"))}</button></form>`;
  const csv = new URLSearchParams(params);
  csv.set("format", "csv");
  csv.set("lang", lang);
  let html = `<h2>${esc(t("nav_overdue"))}</h2>` + filters +
    `<p class="meta"><b id="overdue-total">${body.total}</b> ${esc(t("total"))} · ${esc(t("as_of"))} ${esc(when(body.as_of))}` +
    ` <span class="links"><a id="overdue-csv" href="/api/v1/overdue?${csv.toString()}">${esc(t("csv"))}</a></span></p>`;
  if (body.incomplete) html += `<p class="error">${esc(t("incomplete"))} ${esc(body.incomplete.districts.join(", "))}</p>`;
  html += table("overdue-table", [t("subject"), t("district"), t("community"), t("category"),
    t("major"), t("responsible_unit"), t("found"), t("deadline"), t("overdue_for"),
    t("failed_visits")], overdueRows(body.items), [0, 1, 2, 3, 5]);
  html += `<button type="button" id="overdue-more"${body.next_cursor ? "" : " hidden"}>${esc(t("more"))}</button>`;
  el.innerHTML = html;
  let cursor = body.next_cursor;
  document.getElementById("overdue-filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    const next = new URLSearchParams();
    for (const [k, v] of form.entries()) if (v) next.set(k, v);
    location.hash = "#/overdue?" + next.toString();
  });
  document.getElementById("overdue-more").addEventListener("click", async (ev) => {
    q.set("cursor", cursor);
    const more = await api("/api/v1/overdue?" + q.toString());
    document.querySelector("#overdue-table tbody").insertAdjacentHTML("beforeend", overdueRows(more.items).join(""));
    cursor = more.next_cursor;
    if (!cursor) ev.target.hidden = true;
  });
}

async function viewBulletins(el) {
  const archive = await api("/api/v1/bulletins");
  const rows = archive.bulletins.map((b) => `<tr data-key="${esc(b.key)}">` +
    `<td class="text"><a href="#/bulletin/${encodeURIComponent(b.key)}">${esc(b.key)}</a></td>` +
    `<td class="text">${esc(t(b.kind))}</td><td>${esc(when(b.cut_off))}</td>` +
    `<td class="text">${b.top ? districtLink(b.top) : ""}</td>` +
    `<td class="text">${namedList(b.leaders)}</td><td class="text">${namedList(b.laggards)}</td></tr>`);
  el.innerHTML = `<h2>${esc(t("archive"))}</h2>` + (rows.length ? table("archive-table",
    [t("period"), t("kind"), t("cut_off"), t("top"), t("leaders"), t("laggards")], rows, 2)
    : `<p class="meta">${esc(t("no_bulletin"))}</p>`);
}

async function viewBulletin(el, key) {
  const b = await api(`/api/v1/bulletins/${encodeURIComponent(key)}`);
  const base = `/api/v1/bulletins/${encodeURIComponent(key)}?lang=${lang}&format=`;
  const cols = ["hazards_found", "hazards_rectified", "hazards_not_rectified", "rectification_rate",
                "cases_filed", "cases_cleared", "clearance_rate", "disputes_reported",
                "disputes_resolved", "dispute_resolution_rate", "patrols"];
  const rows = b.districts.map((s) => `<tr data-district="${esc(s.district)}">` +
    `<td class="text">${districtLink(s.district)}</td>` +
    cols.map((c) => `<td data-figure="${c}">${RATES.includes(c) ? pct(s.figures[c]) : s.figures[c]}</td>`).join("") +
    `<td>${s.open_hazards}</td><td>${s.overdue_hazards}</td><td>${s.overdue_major_hazards}</td></tr>`);
  const majors = [];
  for (const s of b.districts) {
    for (const m of s.overdue_major) {
      majors.push(`<tr><td class="text">${districtLink(s.district)}</td>` +
        `<td class="text">${esc(name("unit", m.responsible_unit))}</td><td class="text">${esc(m.subject)}</td>` +
        `<td class="text">${esc(name("hazard", m.category))}</td><td>${esc(when(m.deadline))}</td>` +
        `<td>${days(m.overdue_seconds)}</td><td>${m.failed_visits}</td></tr>`);
    }
  }
  el.innerHTML = `<h2>${esc(t(b.kind))} ${esc(b.key)}</h2>` + bulletinHead(b) +
    `<p class="links"><a id="bulletin-print" href="${base}html" target="_blank">${esc(t("print"))}</a>` +
    `<a href="${base}md">${esc(t("markdown"))}</a>` +
    ["ranking", "districts", "overdue_major"].map((tb) => `<a href="${base}csv&table=${tb}">CSV ${esc(tb)}</a>`).join("") + `</p>` +
    rankingTable(b) +
    (b.unranked.length ? `<p class="meta">${esc(t("unranked"))}: ${namedList(b.unranked)}</p>` : "") +
    `<h2>${esc(t("figures"))}</h2>` +
    table("bulletin-districts", [t("district"), ...cols.map(t), t("open_hazards"), t("overdue_hazards"),
      t("overdue_major_hazards")], rows, 1) +
    `<h2>${esc(t("overdue_major"))}</h2>` +
    (majors.length ? table("bulletin-majors", [t("district"), t("responsible_unit"), t("subject"),
      t("category"), t("deadline"), t("overdue_for"), t("failed_visits")], majors, 4)
      : `<p>${esc(t("none"))}</p>`) +
    `<p class="meta">${esc(t("formula"))}: ${esc(b.formula.text)} ` +
    `(${esc(Object.entries(b.formula.weights).map(([k, v]) => k + "=" + v).join(", "))})</p>`;
}

async function viewDistrict(el, code) {
  const d = await api(`/api/v1/districts/${encodeURIComponent(code)}?limit=50`);
  const cards = ["open_hazards", "overdue_hazards", "overdue_major_hazards", "open_cases",
                 "open_disputes", "hours_since_last_patrol"].map((c) => {
    const v = d.current[c];
    const bad = (c.startsWith("overdue") && v > 0) ? " bad" : "";
    return `<div class="card${bad}" data-figure="${c}"><div class="label">${esc(t(c))}</div>` +
      `<div class="value">${v === null ? "—" : v}</div></div>`;
  }).join("");
  const measures = ["hazards_found", "hazards_rectified", "rectification_rate", "cases_filed",
                    "clearance_rate", "disputes_reported", "dispute_resolution_rate", "patrols_completed"];
  const rolling = ["24h", "7d", "28d"].map((w) => `<tr data-window="${w}"><td class="text">${w}</td>` +
    measures.map((m) => `<td data-figure="${m}">${RATES.includes(m) ? pct(d.rolling[w][m]) : d.rolling[w][m]}</td>`).join("") + `</tr>`);
  const hazardRows = (items) => items.map((h) => `<tr class="${h.major ? "major" : ""}">` +
    `<td class="text">${esc(h.id)}</td><td class="text">${esc(name("community", h.community))}</td>` +
    `<td class="text">${esc(name("hazard", h.category))}</td><td>${esc(h.major ? t("yes") : t("no"))}</td>` +
    `<td class="text">${esc(name("unit", h.responsible_unit))}</td><td>${esc(when(h.deadline))}</td>` +
    `<td>${h.overdue_seconds === null ? "" : days(h.overdue_seconds)}</td><td>${h.failed_visits}</td></tr>`);
  el.innerHTML = `<h2 id="district-name">${esc(name("district", code))}</h2>` +
    `<p class="meta">${esc(t("as_of"))} ${esc(when(d.as_of))} · ` +
    `<a href="#/overdue?district=${encodeURIComponent(code)}">${esc(t("district_overdue"))} (${d.overdue_hazards_page.total})</a></p>` +
    `<div class="cards" id="district-cards">${cards}</div>` +
    `<h2>${esc(t("rolling"))}</h2>` + table("district-rolling", [t("window"), ...measures.map(t)], rolling, 1) +
    `<h2>${esc(t("open_list"))} (${d.open_hazards_page.total})</h2>` +
    table("district-hazards", [t("subject"), t("community"), t("category"), t("major"),
      t("responsible_unit"), t("deadline"), t("overdue_for"), t("failed_visits")], hazardRows(d.open_hazards), [0, 1, 2, 4]) +
    `<button type="button" id="district-more"${d.open_hazards_page.next_cursor ? "" : " hidden"}>${esc(t("more"))}</button>`;
  let cursor = d.open_hazards_page.next_cursor;
  document.getElementById("district-more").addEventListener("click", async (ev) => {
    const more = await api(`/api/v1/districts/${encodeURIComponent(code)}?limit=50&cursor=${encodeURIComponent(cursor)}`);
    document.querySelector("#district-hazards tbody").insertAdjacentHTML("beforeend", hazardRows(more.open_hazards).join(""));
    cursor = more.open_hazards_page.next_cursor;
    if (!cursor) ev.target.hidden = true;
  });
}

// -- routing -------------------------------------------------------------------------

function labelChrome() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  const city = lang === "zh" ? cfg.city.name_zh || cfg.city.name : cfg.city.name;
  document.getElementById("title").textContent = `${city} · ${t("title")}`;
  document.title = `Watchfloor · ${t("title")}`;
  for (const a of document.querySelectorAll("[data-label]")) a.textContent = t(a.dataset.label);
  for (const b of document.querySelectorAll("[data-lang]")) b.classList.toggle("active", b.dataset.lang === lang);
  const jump = document.getElementById("district-jump");
  jump.innerHTML = `<option value="">${esc(t("drill"))}</option>` +
    cfg.districts.map((c) => `<option value="${esc(c)}">${esc(name("district", c))}</option>`).join("");
  document.getElementById("footer").textContent =
    `${t("formula")}: ${cfg.formula} · ${t("cut_off")} ${cfg.cutoff} (${cfg.timezone})`;
}

async function route() {
  const el = document.getElementById("view");
  const hash = location.hash.replace(/^#\/?/, "") || "ranking";
  const [path, query] = hash.split("?");
  const parts = path.split("/");
  const params = new URLSearchParams(query || "");
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === parts[0]);
  document.body.dataset.view = parts[0];
  document.body.dataset.loaded = "false";
  try {
    if (parts[0] === "overdue") await viewOverdue(el, params);
    else if (parts[0] === "bulletins") await viewBulletins(el);
    else if (parts[0] === "bulletin") await viewBulletin(el, decodeURIComponent(parts[1]));
    else if (parts[0] === "district") await viewDistrict(el, decodeURIComponent(parts[1]));
    else await viewRanking(el);
  } catch (err) {
    el.innerHTML = `<p class="error">${esc(err.message)}</p>`;
  }
  document.body.dataset.loaded = "true";
}

async function start() {
  cfg = await api("/api/v1/centre");
  lang = new URLSearchParams(location.search).get("lang") || localStorage.getItem("watchfloor-lang") || cfg.lang;
  labelChrome();
  for (const b of document.querySelectorAll("[data-lang]")) {
    b.addEventListener("click", () => {
      lang = b.dataset.lang;
      localStorage.setItem("watchfloor-lang", lang);
      labelChrome();
      route();
    });
  }
  document.getElementById("district-jump").addEventListener("change", (ev) => {
    if (ev.target.value) location.hash = "#/district/" + ev.target.value;
  });
  window.addEventListener("hashchange", route);
  await route();
}

start();
