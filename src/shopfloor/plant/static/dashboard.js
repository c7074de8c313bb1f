/* shopfloor line dashboard: plain JavaScript, no libraries, no external requests.
 *
 * Data: GET v1/dashboard/stats (models, totals, records per bucket), GET v1/records (the recent past), and the
 * live stream GET v1/events (Server-Sent Events read with fetch, so the API key goes in the Authorization header,
 * which EventSource cannot send). Every failure is shown as text in the "Problems" box.
 */
"use strict";
(function () {
  const KEY_STORE = "shopfloor.apiKey";
  const WINDOW_S = 900, BUCKET_S = 30;
  const MAX_ROWS = 50, MAX_ALARMS = 25, MAX_IMAGES = 6, MAX_RUL_POINTS = 400, MAX_RUL_UNITS = 8;
  const MAX_SEEN = 20000, MAX_ERRORS = 8, RESYNC_MS = 60000, RETRY_MS = 3000;
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];
  const SVG = "http://www.w3.org/2000/svg";

  const state = {
    models: new Map(),      // name -> {task, input_kind}
    alarmLabels: new Set(["anomalous", "failure"]),
    totals: new Map(),      // model -> {count, labels: Map(label -> count)}
    series: new Map(),      // key -> {model, source, counts: number[]}
    start: 0, bucketS: BUCKET_S, n: Math.ceil(WINDOW_S / BUCKET_S), offset: 0, statsLastId: 0, partial: null,
    records: [], alarms: [], images: [],
    rul: new Map(),         // model -> Map(unit -> points[])
    seen: new Set(), seenOrder: [],
    counted: [],            // records counted since the last stats (re-applied after a resync)
    lastId: 0, live: 0, streaming: false, booted: false,
  };

  // ------------------------------------------------------------------ small helpers
  const $ = (id) => document.getElementById(id);
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const serverNow = () => Date.now() / 1000 + state.offset;
  const pad = (x) => String(x).padStart(2, "0");
  function clock(t) { const d = new Date(t * 1000); return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`; }
  function shortClock(t) { const d = new Date(t * 1000); return `${pad(d.getHours())}:${pad(d.getMinutes())}`; }
  const createdS = (r) => Date.parse(r.created) / 1000;
  function fmt(x, digits) { return typeof x === "number" && isFinite(x) ? x.toFixed(digits) : "–"; }
  const seriesKey = (model, source) => `${model}\u0000${source === null || source === undefined ? "" : source}`;
  const sourceName = (s) => (s === null || s === undefined || s === "" ? "(no source)" : s);

  // ------------------------------------------------------------------ problems, status, API key
  function showError(where, err) {
    const text = err instanceof Error ? err.message : String(err);
    const list = $("errors-list");
    const first = list.firstElementChild;
    if (first && first.dataset.text === `${where}: ${text}`) { // the same problem again: count it
      const n = Number(first.dataset.n || "1") + 1;
      first.dataset.n = String(n);
      first.textContent = `${clock(Date.now() / 1000)} ${where}: ${text} (×${n})`;
    } else {
      const li = el("li", { text: `${clock(Date.now() / 1000)} ${where}: ${text}` });
      li.dataset.text = `${where}: ${text}`;
      list.prepend(li);
      while (list.children.length > MAX_ERRORS) list.lastElementChild.remove();
    }
    $("errors").hidden = false;
    if (window.console) console.error(`shopfloor dashboard: ${where}:`, err);
  }
  function setStatus(kind, text) { const s = $("status"); s.className = `status ${kind}`; s.textContent = text; document.body.dataset.status = kind; }

  function apiKey() { try { return sessionStorage.getItem(KEY_STORE) || ""; } catch (e) { return ""; } }
  function takeKeyFromUrl() {
    const params = new URLSearchParams(location.search);
    const key = params.get("key");
    if (key === null) return;
    try { sessionStorage.setItem(KEY_STORE, key.trim()); } catch (e) { showError("API key", e); }
    params.delete("key"); // out of the address bar and the history
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
  }
  function authHeaders(extra) {
    const h = Object.assign({}, extra || {});
    const key = apiKey();
    if (key) h.Authorization = `Bearer ${key}`;
    return h;
  }
  async function problemOf(response, what) {
    let detail = response.statusText || "request failed";
    try {
      const body = await response.json();
      detail = body.detail || body.title || JSON.stringify(body);
    } catch (e) { /* not JSON: keep the status text */ }
    const err = new Error(`${what}: HTTP ${response.status}: ${detail}`);
    err.status = response.status;
    err.detail = detail;
    return err;
  }
  async function api(path) {
    let r;
    try {
      r = await fetch(path, { headers: authHeaders({ Accept: "application/json" }), cache: "no-store" });
    } catch (e) {
      throw new Error(`GET ${path}: the server did not answer (${e.message})`);
    }
    if (!r.ok) throw await problemOf(r, `GET ${path}`);
    return r.json();
  }
  function needKey(err) {
    setStatus("key", apiKey() ? "API key refused" : "API key needed");
    $("keyform-why").textContent = apiKey()
      ? `The server refused the API key kept in this tab (${err.detail || err.message}). Enter a valid key.`
      : `This server needs an API key (${err.detail || err.message}).`;
    $("keyform").hidden = false;
    $("keyform-input").focus();
  }

  // ------------------------------------------------------------------ what a record is
  function isAlarm(r) {
    return state.alarmLabels.has(r.label) || !!(r.result && r.result.out_of_range === true);
  }
  function alarmReason(r) {
    const why = [];
    if (state.alarmLabels.has(r.label)) why.push(r.label);
    if (r.result && r.result.out_of_range === true) {
      const cols = r.result.out_of_range_columns;
      why.push(Array.isArray(cols) && cols.length ? `out of range: ${cols.join(", ")}` : "out of range");
    }
    return why.join("; ");
  }
  function rulPoint(r) {
    const res = r.result || {};
    if (typeof res.rul !== "number" || res.unit === undefined || res.unit === null) return null;
    const cycle = typeof res.last_time === "number" && isFinite(res.last_time);
    return { id: r.id, unit: String(res.unit), x: cycle ? res.last_time : createdS(r), cycle, y: res.rul,
             lo: typeof res.lower === "number" ? res.lower : null, hi: typeof res.upper === "number" ? res.upper : null };
  }
  function note(r) {
    const parts = [];
    if (isAlarm(r)) parts.push(`ALARM ${alarmReason(r)}`);
    const p = rulPoint(r);
    if (p) parts.push(`unit ${p.unit}: RUL ${fmt(p.y, 1)}`);
    if (r.input_file || r.heatmap_file) parts.push("image kept");
    return parts.join(" · ");
  }

  // ------------------------------------------------------------------ state updates
  function insertNewestFirst(list, r, max) {
    let i = 0;
    while (i < list.length && list[i].id > r.id) i++;
    if (i < list.length && list[i].id === r.id) return;
    list.splice(i, 0, r);
    if (list.length > max) list.length = max;
  }
  function remember(id) {
    state.seen.add(id);
    state.seenOrder.push(id);
    if (state.seenOrder.length > MAX_SEEN) state.seen.delete(state.seenOrder.shift());
  }
  function roll(upTo) {
    const end = () => state.start + state.n * state.bucketS;
    if (upTo - end() > state.n * state.bucketS) { // far behind (a sleeping laptop): start the window afresh
      state.start = (Math.floor(upTo / state.bucketS) + 1 - state.n) * state.bucketS;
      for (const s of state.series.values()) s.counts.fill(0);
      return;
    }
    while (upTo >= end()) {
      state.start += state.bucketS;
      for (const s of state.series.values()) { s.counts.shift(); s.counts.push(0); }
    }
  }
  function count(r) {
    const t = state.totals.get(r.model) || { count: 0, labels: new Map() };
    t.count += 1;
    const label = r.label === null || r.label === undefined ? "(none)" : r.label;
    t.labels.set(label, (t.labels.get(label) || 0) + 1);
    state.totals.set(r.model, t);
    const at = createdS(r);
    roll(Math.max(at, serverNow()));
    const i = Math.floor((at - state.start) / state.bucketS);
    if (i < 0 || i >= state.n) return;
    const key = seriesKey(r.model, r.source);
    if (!state.series.has(key)) state.series.set(key, { model: r.model, source: r.source, counts: new Array(state.n).fill(0) });
    state.series.get(key).counts[i] += 1;
  }
  function addRecord(r, live) {
    if (!r || typeof r.id !== "number" || state.seen.has(r.id)) return false;
    remember(r.id);
    if (r.id > state.statsLastId) { count(r); state.counted.push(r); } // not in the stats yet
    insertNewestFirst(state.records, r, MAX_ROWS);
    if (isAlarm(r)) insertNewestFirst(state.alarms, r, MAX_ALARMS);
    if (r.input_file || r.heatmap_file) insertNewestFirst(state.images, r, MAX_IMAGES);
    const p = rulPoint(r);
    if (p) {
      if (!state.rul.has(r.model)) state.rul.set(r.model, new Map());
      const units = state.rul.get(r.model);
      const points = units.get(p.unit) || [];
      points.push(p);
      points.sort((a, b) => a.x - b.x || a.id - b.id);
      if (points.length > MAX_RUL_POINTS) points.splice(0, points.length - MAX_RUL_POINTS);
      units.set(p.unit, points);
    }
    if (live) { state.live += 1; r._fresh = true; }
    state.lastId = Math.max(state.lastId, r.id);
    return true;
  }
  function applyStats(stats) {
    state.offset = stats.now - Date.now() / 1000;
    state.bucketS = stats.bucket_s; state.n = stats.buckets; state.start = stats.start;
    state.statsLastId = stats.last_id;
    state.partial = stats.partial ? stats.counted_from : null;
    if (Array.isArray(stats.alarm_labels)) state.alarmLabels = new Set(stats.alarm_labels);
    state.models = new Map(stats.models.map((m) => [m.name, m]));
    state.totals = new Map();
    for (const row of stats.totals) {
      const t = state.totals.get(row.model) || { count: 0, labels: new Map() };
      t.count += row.count;
      const label = row.label === null ? "(none)" : row.label;
      t.labels.set(label, (t.labels.get(label) || 0) + row.count);
      state.totals.set(row.model, t);
    }
    state.series = new Map(stats.series.map((s) => [seriesKey(s.model, s.source), { model: s.model, source: s.source, counts: s.counts.slice() }]));
    const again = state.counted.filter((r) => r.id > stats.last_id); // arrived after these stats were taken
    state.counted = again;
    for (const r of again) count(r);
    state.lastId = Math.max(state.lastId, stats.last_id);
  }

  // ------------------------------------------------------------------ loading
  async function loadStats() {
    applyStats(await api(`v1/dashboard/stats?window_s=${WINDOW_S}&bucket_s=${BUCKET_S}`));
  }
  async function backfill() {
    const names = new Set([...state.models.keys(), ...state.totals.keys()]);
    const asks = [api(`v1/records?limit=${MAX_ROWS}`)];
    for (const name of [...names].slice(0, 16)) {
      const m = state.models.get(name);
      const limit = m && m.task === "rul" ? MAX_RUL_POINTS : (m && m.input_kind === "image" ? 40 : 100);
      asks.push(api(`v1/records?model=${encodeURIComponent(name)}&limit=${limit}`));
    }
    for (const label of state.alarmLabels) asks.push(api(`v1/records?label=${encodeURIComponent(label)}&limit=${MAX_ALARMS}`));
    const pages = await Promise.all(asks);
    for (const page of pages) for (const r of page.records) addRecord(r, false);
  }
  async function boot() {
    setStatus("connecting", "loading…");
    try {
      await loadStats();
      await backfill();
      state.booted = true;
      render();
      if (!state.streaming) stream();
    } catch (e) {
      if (e.status === 401) { needKey(e); return; }
      showError("loading the dashboard", e);
      setStatus("error", "not loaded: retrying");
      await sleep(RETRY_MS * 2);
      boot();
    }
  }
  async function resync() {
    if (!state.booted) return;
    try { await loadStats(); render(); } catch (e) {
      if (e.status === 401) needKey(e); else showError("refreshing the counts", e);
    }
  }

  // ------------------------------------------------------------------ the live stream (SSE over fetch)
  function handleEvent(ev) {
    if (ev.id && /^\d+$/.test(ev.id)) state.lastId = Math.max(state.lastId, Number(ev.id));
    if (!ev.data) return;
    let data;
    try { data = JSON.parse(ev.data); } catch (e) { showError("live stream", `an event that is not JSON: ${ev.data.slice(0, 200)}`); return; }
    if (ev.event === "record") { if (addRecord(data, true)) scheduleRender(); }
    else if (ev.event === "gap") { showError("live stream", data.detail); resync(); }
    else if (ev.event === "problem") { showError("live stream", `${data.title}: ${data.detail}`); setStatus("error", "record store unavailable"); }
    else if (ev.event === "hello") { setStatus("live", "live"); document.body.dataset.live = "1"; }
  }
  function parseBlock(block) {
    const ev = { event: "message", data: "", id: null };
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? "" : line.slice(i + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") ev.event = value; else if (field === "data") data.push(value); else if (field === "id") ev.id = value;
    }
    ev.data = data.join("\n");
    return ev;
  }
  async function stream() {
    state.streaming = true;
    for (;;) {
      let failed = null;
      try {
        const r = await fetch(`v1/events?after_id=${state.lastId}`,
          { headers: authHeaders({ Accept: "text/event-stream" }), cache: "no-store" });
        if (!r.ok) throw await problemOf(r, "GET v1/events");
        if (!r.body) throw new Error("this browser cannot read a streamed response (fetch without a body stream)");
        const reader = r.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            handleEvent(parseBlock(block));
          }
        }
        // the server ends each stream after a while: reconnect at once from the cursor
      } catch (e) {
        failed = e;
      }
      if (failed) {
        if (failed.status === 401) { state.streaming = false; document.body.dataset.live = "0"; needKey(failed); return; }
        document.body.dataset.live = "0";
        showError("live stream", failed.message && failed.message.startsWith("GET") ? failed
          : new Error(`the connection to v1/events broke (${failed.message}); reconnecting`));
        setStatus("error", "disconnected: reconnecting");
        await sleep(RETRY_MS);
      }
    }
  }

  // ------------------------------------------------------------------ drawing
  function niceStep(span, ticks) {
    const raw = span / Math.max(ticks, 1);
    const mag = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * mag) return m * mag;
    return 10 * mag;
  }
  function timeStep(span) {
    for (const s of [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400]) if (span / s <= 6) return s;
    return 86400 * 7;
  }
  /* A line chart in SVG. lines: [{color, points: [[x, y], ...], band: [[x, lo, hi], ...]?, name}] */
  function lineChart(container, lines, o) {
    const W = Math.max(container.clientWidth || 600, 320), H = o.height || 220;
    const m = { l: 46, r: 14, t: 12, b: 28 };
    const xs = lines.flatMap((l) => l.points.map((p) => p[0]));
    const ys = lines.flatMap((l) => l.points.map((p) => p[1]).concat((l.band || []).flatMap((b) => [b[1], b[2]])));
    let x0 = o.xMin !== undefined ? o.xMin : Math.min(...xs), x1 = o.xMax !== undefined ? o.xMax : Math.max(...xs);
    if (!(x1 > x0)) { x0 -= 1; x1 += 1; }
    let y0 = o.yMin !== undefined ? o.yMin : Math.min(0, ...ys), y1 = Math.max(o.yFloor || 1, ...ys.filter(isFinite));
    const ystep = niceStep(y1 - y0, 4);
    y1 = Math.ceil(y1 / ystep) * ystep; y0 = Math.floor(y0 / ystep) * ystep;
    const X = (x) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
    const Y = (y) => H - m.b - ((y - y0) / (y1 - y0 || 1)) * (H - m.t - m.b);
    const s = svgEl("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": o.label });
    for (let y = y0; y <= y1 + ystep / 2; y += ystep) {
      s.append(svgEl("line", { x1: m.l, x2: W - m.r, y1: Y(y), y2: Y(y), class: "grid-line" }));
      s.append(svgEl("text", { x: m.l - 6, y: Y(y) + 4, "text-anchor": "end" }, Number(y.toFixed(6)).toString()));
    }
    const xstep = o.time ? timeStep(x1 - x0) : niceStep(x1 - x0, 6);
    for (let x = Math.ceil(x0 / xstep) * xstep; x <= x1; x += xstep) {
      s.append(svgEl("line", { x1: X(x), x2: X(x), y1: H - m.b, y2: H - m.b + 4, class: "axis" }));
      s.append(svgEl("text", { x: X(x), y: H - m.b + 16, "text-anchor": "middle" }, o.time ? shortClock(x) : Number(x.toFixed(6)).toString()));
    }
    s.append(svgEl("line", { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b, class: "axis" }));
    s.append(svgEl("line", { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b, class: "axis" }));
    if (o.yLabel) s.append(svgEl("text", { x: m.l + 4, y: m.t + 2, "dominant-baseline": "hanging" }, o.yLabel));
    for (const l of lines) {
      if (l.band && l.band.length > 1) {
        const top = l.band.map((b) => `${X(b[0]).toFixed(1)},${Y(b[2]).toFixed(1)}`);
        const bottom = l.band.slice().reverse().map((b) => `${X(b[0]).toFixed(1)},${Y(b[1]).toFixed(1)}`);
        s.append(svgEl("polygon", { points: top.concat(bottom).join(" "), fill: l.color, class: "band" }));
      }
      const pts = l.points.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(" ");
      const line = svgEl("polyline", { points: pts, stroke: l.color, class: "series", "data-series": l.name,
                                       "data-sum": l.points.reduce((a, p) => a + p[1], 0) });
      line.append(svgEl("title", {}, l.name));
      s.append(line);
      const last = l.points[l.points.length - 1];
      if (last) s.append(svgEl("circle", { cx: X(last[0]), cy: Y(last[1]), r: 3, fill: l.color }));
    }
    container.replaceChildren(s);
  }

  function renderCounters() {
    const box = $("counters");
    const names = [...new Set([...state.models.keys(), ...state.totals.keys()])].sort();
    if (!names.length) { box.replaceChildren(el("p", { class: "muted", text: "no models served and no records yet" })); return; }
    const perMin = Math.max(1, Math.round(60 / state.bucketS));
    box.replaceChildren(...names.map((name) => {
      const m = state.models.get(name);
      const t = state.totals.get(name) || { count: 0, labels: new Map() };
      let inWindow = 0, lastMinute = 0;
      for (const s of state.series.values()) {
        if (s.model !== name) continue;
        inWindow += s.counts.reduce((a, b) => a + b, 0);
        lastMinute += s.counts.slice(-perMin).reduce((a, b) => a + b, 0);
      }
      const alarms = [...state.alarmLabels].reduce((a, l) => a + (t.labels.get(l) || 0), 0);
      const labels = [...t.labels.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5);
      return el("div", { class: `counter${alarms ? " alarm" : ""}`, "data-model": name, "data-total": t.count },
        el("div", {}, el("span", { class: "name", text: name }), el("span", { class: "task", text: m ? m.task : "(not served here)" })),
        el("div", { class: "big", text: t.count.toLocaleString() }),
        el("div", { class: "row" }, el("b", { text: (lastMinute * 60 / (perMin * state.bucketS)).toFixed(1) }), " /min now · ",
          el("b", { text: String(inWindow) }), ` in ${Math.round(state.n * state.bucketS / 60)} min`),
        el("div", { class: "row" }, ...labels.flatMap(([label, n], i) => [i ? " · " : "",
          el("span", { class: state.alarmLabels.has(label) ? "bad" : "", text: `${label} ${n}` })])));
    }));
  }

  function renderChart() {
    $("bucket-label").textContent = `${state.bucketS} s`;
    $("window-label").textContent = `${Math.round(state.n * state.bucketS / 60)} min`;
    const entries = [...state.series.values()].sort((a, b) => seriesKey(a.model, a.source) < seriesKey(b.model, b.source) ? -1 : 1);
    const lines = entries.map((s, i) => ({
      name: `${s.model} · ${sourceName(s.source)}`, color: PALETTE[i % PALETTE.length],
      points: s.counts.map((c, j) => [state.start + (j + 0.5) * state.bucketS, c]),
    }));
    const chart = $("chart");
    if (!lines.length) lines.push({ name: "no records", color: "#999", points: [[state.start, 0], [state.start + state.n * state.bucketS, 0]] });
    lineChart(chart, lines, { time: true, xMin: state.start, xMax: state.start + state.n * state.bucketS, yMin: 0, yFloor: 1,
                              yLabel: `records / ${state.bucketS} s`, label: "records per time bucket by model and source" });
    const perMin = Math.max(1, Math.round(60 / state.bucketS));
    $("legend").replaceChildren(...entries.map((s, i) => {
      const recent = s.counts.slice(-perMin).reduce((a, b) => a + b, 0) * 60 / (perMin * state.bucketS);
      const total = s.counts.reduce((a, b) => a + b, 0);
      return el("span", { "data-series": `${s.model} · ${sourceName(s.source)}` }, el("span", { class: `swatch sw${i % PALETTE.length}` }),
        `${s.model} · ${sourceName(s.source)}: ${recent.toFixed(1)}/min, ${total} in window`);
    }));
    $("chart-note").textContent = state.partial
      ? `More records in the window than the chart reads: counted from ${new Date(state.partial).toLocaleTimeString()}.` : "";
  }

  function recordRow(r) {
    const tr = el("tr", { "data-id": r.id, class: [isAlarm(r) ? "alarm" : "", r._fresh ? "fresh" : ""].join(" ").trim() || null },
      el("td", { text: clock(createdS(r)), title: r.created }), el("td", { text: String(r.id) }),
      el("td", { text: r.model }), el("td", { text: sourceName(r.source) }),
      el("td", { class: state.alarmLabels.has(r.label) ? "label bad" : "label", text: r.label === null ? "–" : r.label }),
      el("td", { class: "num", text: fmt(r.score, 3) }), el("td", { class: "num", text: fmt(r.latency_ms, 1) }),
      el("td", { class: "note", text: note(r) }));
    r._fresh = false;
    return tr;
  }
  function renderRecords() {
    const body = $("records").tBodies[0];
    body.replaceChildren(...(state.records.length ? state.records.map(recordRow)
      : [el("tr", { class: "empty" }, el("td", { colspan: 8, class: "muted", text: "no records yet" }))]));
    $("live-count").textContent = state.live ? `${state.live} live` : "";
  }

  function renderAlarms() {
    const list = $("alarms");
    $("alarm-count").textContent = String(state.alarms.length);
    $("alarm-count").className = state.alarms.length ? "badge hot" : "badge";
    if (!state.alarms.length) { list.replaceChildren(el("li", { class: "muted", text: "none" })); return; }
    list.replaceChildren(...state.alarms.map((r) => el("li", { class: "alarm", "data-id": r.id },
      el("span", { class: "why", text: alarmReason(r) }), ` ${r.model} · ${sourceName(r.source)} · `,
      el("span", { class: "muted", text: `${clock(createdS(r))} · record ${r.id} · score ${fmt(r.score, 3)}` }))));
  }

  const blobs = new Map(); // "id/kind" -> {url} | {error}
  async function loadBlob(id, kind, img, holder) {
    const key = `${id}/${kind}`;
    let got = blobs.get(key);
    if (!got) {
      got = { pending: true };
      blobs.set(key, got);
      try {
        const r = await fetch(`v1/records/${id}/files/${kind}`, { headers: authHeaders(), cache: "force-cache" });
        if (!r.ok) throw await problemOf(r, `GET v1/records/${id}/files/${kind}`);
        const blob = await r.blob();
        if (!blob.type.startsWith("image/")) throw new Error(`the stored ${kind} is ${blob.type || "not an image"}; the browser cannot show it`);
        got.url = URL.createObjectURL(blob);
      } catch (e) {
        got.error = e.detail || e.message;
        if (e.status === 401) needKey(e);
      }
      got.pending = false;
    }
    while (got.pending) await sleep(50);
    if (got.url) { img.src = got.url; img.hidden = false; holder.remove(); }
    else { holder.textContent = got.error; }
  }
  function renderImages() {
    const box = $("images");
    const keep = new Set(state.images.flatMap((r) => [`${r.id}/input`, `${r.id}/heatmap`]));
    for (const [key, got] of blobs) if (!keep.has(key) && !got.pending) { if (got.url) URL.revokeObjectURL(got.url); blobs.delete(key); }
    if (!state.images.length) {
      box.replaceChildren(el("p", { class: "muted", text: "no stored images (the server keeps inputs and heatmaps with --inputs-dir)" }));
      return;
    }
    box.replaceChildren(...state.images.map((r) => {
      const figures = [["input", r.input_file], ["heatmap", r.heatmap_file]].map(([kind, file]) => {
        const img = el("img", { alt: `${kind} of record ${r.id}`, hidden: true, "data-kind": kind });
        const holder = el("div", { class: "missing", text: file ? "loading…" : `no ${kind} kept` });
        if (file) loadBlob(r.id, kind, img, holder);
        return el("figure", {}, img, holder, el("figcaption", { text: kind }));
      });
      return el("div", { class: `image-card${isAlarm(r) ? " alarm" : ""}`, "data-id": r.id },
        el("div", { class: "pair" }, ...figures),
        el("div", {}, el("b", { text: r.label === null ? "–" : r.label }), ` · score ${fmt(r.score, 3)}`),
        el("div", { class: "muted", text: `${r.model} · ${sourceName(r.source)} · ${clock(createdS(r))} · #${r.id}` }));
    }));
  }

  function renderRul() {
    const box = $("rul");
    if (!state.rul.size) { box.replaceChildren(el("p", { class: "muted", text: "no RUL records yet" })); return; }
    box.replaceChildren(...[...state.rul.entries()].map(([model, units]) => {
      const ranked = [...units.entries()].sort((a, b) => b[1][b[1].length - 1].id - a[1][a[1].length - 1].id);
      const shown = ranked.slice(0, MAX_RUL_UNITS);
      const cycle = shown.every(([, pts]) => pts.every((p) => p.cycle));
      const lines = shown.map(([unit, pts], i) => ({
        name: `unit ${unit}`, color: PALETTE[i % PALETTE.length], points: pts.map((p) => [p.x, p.y]),
        band: pts.every((p) => p.lo !== null && p.hi !== null) ? pts.map((p) => [p.x, p.lo, p.hi]) : null,
      }));
      const plot = el("div", { class: "rul-plot", "data-model": model });
      const legend = el("div", { class: "legend" }, ...shown.map(([unit, pts], i) => {
        const last = pts[pts.length - 1];
        return el("span", { "data-unit": unit }, el("span", { class: `swatch sw${i % PALETTE.length}` }),
          `unit ${unit}: RUL ${fmt(last.y, 1)}${last.lo !== null && last.hi !== null ? ` [${fmt(last.lo, 1)}, ${fmt(last.hi, 1)}]` : ""}`);
      }));
      const section = el("div", { class: "rul-model" }, el("h3", { text: `${model}${ranked.length > shown.length ? ` (the ${shown.length} most recent of ${ranked.length} units)` : ""}` }), plot, legend);
      requestAnimationFrame(() => lineChart(plot, lines, { time: !cycle, yMin: 0, height: 200, yLabel: cycle ? "RUL (cycles) by last cycle" : "RUL by time", label: `RUL per unit of ${model}` }));
      return section;
    }));
  }

  let renderTimer = null;
  function scheduleRender() { if (renderTimer === null) renderTimer = setTimeout(() => { renderTimer = null; render(); }, 150); }
  function render() {
    for (const [what, fn] of [["counters", renderCounters], ["chart", renderChart], ["records", renderRecords],
                              ["alarms", renderAlarms], ["images", renderImages], ["RUL", renderRul]]) {
      try { fn(); } catch (e) { showError(`drawing the ${what}`, e); }
    }
    $("updated").textContent = `updated ${clock(Date.now() / 1000)}`;
    document.body.dataset.rendered = String(state.lastId);
  }

  // ------------------------------------------------------------------ start
  window.addEventListener("error", (e) => showError("page script", e.error || e.message));
  window.addEventListener("unhandledrejection", (e) => showError("page script", e.reason));
  document.addEventListener("DOMContentLoaded", () => {
    $("errors-clear").addEventListener("click", () => { $("errors-list").replaceChildren(); $("errors").hidden = true; });
    $("keyform-form").addEventListener("submit", (e) => {
      e.preventDefault();
      try { sessionStorage.setItem(KEY_STORE, $("keyform-input").value.trim()); } catch (err) { showError("API key", err); }
      $("keyform-input").value = "";
      $("keyform").hidden = true;
      boot();
    });
    takeKeyFromUrl();
    boot();
    setInterval(resync, RESYNC_MS);
    setInterval(() => { if (state.booted) { roll(serverNow()); renderChart(); renderCounters(); } }, 5000);
    let resizeTimer = null;
    window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(render, 200); });
  });
})();
