// Trainyard dashboard: the few things htmx does not do. Charts (uPlot) read the per-epoch rows the
// server renders (on the page and appended live by the `metrics` event); the SSE glue keeps one
// stream per page resumable without duplicates.
"use strict";

(function () {
  const PALETTE = ["#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7ea4", "#57606a"];

  function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  // ---- Resumable stream: each swap target remembers the last seq it applied; the stream URL carries
  // the newest one, so a reconnect after a closed connection asks only for what follows. ----
  document.addEventListener("htmx:sseBeforeMessage", function (e) {
    const root = document.getElementById("live");
    const seq = Number(e.detail && e.detail.lastEventId);
    if (!root || !seq) return;
    const target = e.target;
    const seen = Number(target.dataset.seq || root.dataset.after || 0);
    if (seq <= seen) { e.preventDefault(); return; }  // already on the page
    target.dataset.seq = String(seq);
    if (seq > Number(root.dataset.last || 0)) {
      root.dataset.last = String(seq);
      root.setAttribute("sse-connect", root.dataset.stream + "?after=" + seq);
    }
  });

  // ---- Charts ----
  function points() {
    const rows = document.querySelectorAll("#metrics-rows tr[data-point]");
    const byEpoch = new Map();
    rows.forEach(function (row) {
      const p = JSON.parse(row.dataset.point);
      byEpoch.set(p.epoch, p);  // a resumed attempt may report an epoch again: the latest wins
    });
    return Array.from(byEpoch.values()).sort(function (a, b) { return a.epoch - b.epoch; });
  }

  function groups(pts) {
    const losses = new Set(), val = new Set();
    pts.forEach(function (p) {
      Object.keys(p.train_metrics).forEach(function (k) { if (k.includes("loss")) losses.add("train/" + k); });
      Object.keys(p.val_metrics).forEach(function (k) { (k.includes("loss") ? losses : val).add("val/" + k); });
    });
    return { losses: Array.from(losses).sort(), val: Array.from(val).sort() };
  }

  function value(p, key) {
    const [side, name] = [key.slice(0, key.indexOf("/")), key.slice(key.indexOf("/") + 1)];
    const v = (side === "train" ? p.train_metrics : p.val_metrics)[name];
    return v === undefined ? null : v;
  }

  function makeChart(el, title, labels, data) {
    const axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--line") }, ticks: { stroke: cssVar("--line") } };
    const opts = {
      title: title, width: Math.max(el.clientWidth - 10, 240), height: 240,
      scales: { x: { time: false } },
      series: [{ label: "epoch" }].concat(labels.map(function (label, i) {
        return { label: label, stroke: PALETTE[i % PALETTE.length], width: 1.5, points: { show: true, size: 5 } };
      })),
      axes: [Object.assign({ label: "epoch" }, axis), axis],
      cursor: { sync: { key: "epochs" } },
    };
    return new uPlot(opts, data, el);
  }

  const charts = {};
  function drawJobCharts() {
    const pts = points();
    const keys = groups(pts);
    const epochs = pts.map(function (p) { return p.epoch; });
    ["losses", "val"].forEach(function (group) {
      const el = document.getElementById("chart-" + group);
      if (!el) return;
      const labels = keys[group];
      const data = [epochs].concat(labels.map(function (k) { return pts.map(function (p) { return value(p, k); }); }));
      const chart = charts[group];
      if (chart && chart.labels === labels.join("|")) {
        chart.plot.setData(data);
      } else {
        if (chart) chart.plot.destroy();
        el.textContent = "";
        charts[group] = { labels: labels.join("|"), plot: makeChart(el, null, labels, data) };
      }
      el.dataset.points = String(epochs.length);
    });
  }

  // ---- Logs: level filter, follow, a bounded tail ----
  function setupLogs() {
    const lines = document.getElementById("log-lines");
    if (!lines) return;
    const level = document.getElementById("log-level"), follow = document.getElementById("log-follow");
    level.addEventListener("change", function () {
      lines.className = "log-lines min-" + level.value;
    });
    lines.addEventListener("htmx:sseMessage", function () {
      while (lines.children.length > 2000) lines.removeChild(lines.firstElementChild);
      if (follow.checked) lines.scrollTop = lines.scrollHeight;
    });
    lines.scrollTop = lines.scrollHeight;
  }

  // ---- Compare: one metric of every job on one chart ----
  function setupCompare() {
    const dataEl = document.getElementById("compare-data");
    if (!dataEl) return;
    const series = JSON.parse(dataEl.textContent);
    const select = document.getElementById("compare-metric"), el = document.getElementById("chart-compare");
    const keys = new Set();
    Object.values(series).forEach(function (s) {
      const g = groups(s.points);
      g.val.concat(g.losses).forEach(function (k) { keys.add(k); });
    });
    Array.from(keys).sort().forEach(function (k) {
      const o = document.createElement("option"); o.value = o.textContent = k; select.appendChild(o);
    });
    const preferred = Array.from(keys).find(function (k) { return k.endsWith("mAP50-95"); });
    if (preferred) select.value = preferred;
    let plot = null;
    function draw() {
      const key = select.value;
      const epochs = Array.from(new Set([].concat.apply([], Object.values(series).map(function (s) {
        return s.points.map(function (p) { return p.epoch; });
      })))).sort(function (a, b) { return a - b; });
      const names = [], data = [epochs];
      Object.values(series).forEach(function (s) {
        names.push(s.name);
        const at = new Map(s.points.map(function (p) { return [p.epoch, value(p, key)]; }));
        data.push(epochs.map(function (e) { return at.has(e) ? at.get(e) : null; }));
      });
      if (plot) plot.destroy();
      el.textContent = "";
      plot = makeChart(el, key, names, data);
      el.dataset.series = String(names.length);
    }
    select.addEventListener("change", draw);
    if (keys.size) draw();
  }

  // ---- Jobs list: pick 2-8 rows to compare ----
  function setupPicks() {
    const ids = document.getElementById("compare-ids"), button = document.getElementById("compare-button");
    if (!ids) return;
    document.addEventListener("change", function (e) {
      if (!e.target.classList || !e.target.classList.contains("pick")) return;
      const picked = Array.from(document.querySelectorAll("input.pick:checked")).map(function (i) { return i.value; });
      ids.value = picked.join(",");
      button.disabled = picked.length < 2 || picked.length > 8;
    });
  }

  document.addEventListener("click", function (e) {
    const button = e.target.closest && e.target.closest("button.copy");
    if (!button) return;
    const source = document.querySelector(button.dataset.copy);
    if (source && navigator.clipboard) {
      navigator.clipboard.writeText(source.textContent).then(function () { button.textContent = "copied"; }, function () {});
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    if (document.getElementById("metrics-rows")) {
      drawJobCharts();
      document.getElementById("metrics-rows").addEventListener("htmx:sseMessage", drawJobCharts);
      let pending = null;
      window.addEventListener("resize", function () {
        clearTimeout(pending);
        pending = setTimeout(function () {
          Object.keys(charts).forEach(function (g) { charts[g].plot.destroy(); delete charts[g]; });
          drawJobCharts();
        }, 200);
      });
    }
    setupLogs();
    setupCompare();
    setupPicks();
  });
})();
