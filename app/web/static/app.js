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

  // ---- Annotations over an image (boxes, polygons, keypoints, labels): one colour per class. The
  // same code draws a model's predictions and a dataset's labels. ----
  function classColour(id) { return "hsl(" + ((Number(id) * 137.508) % 360) + " 85% 50%)"; }

  function drawAnnotations(canvas, image, items, minConf) {
    const ctx = canvas.getContext("2d");
    canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
    ctx.drawImage(image, 0, 0);
    const scale = Math.max(1, image.naturalWidth / 400);
    ctx.lineWidth = 2 * scale; ctx.font = (12 * scale) + "px sans-serif";
    let shown = 0;
    items.forEach(function (item) {
      if (item.confidence != null && item.confidence < minConf) return;
      shown += 1;
      const colour = classColour(item.class_id);
      ctx.strokeStyle = colour; ctx.fillStyle = colour;
      if (item.polygon && item.polygon.length) {
        ctx.beginPath();
        item.polygon.forEach(function (p, i) { i ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1]); });
        ctx.closePath(); ctx.globalAlpha = 0.25; ctx.fill(); ctx.globalAlpha = 1; ctx.stroke();
      }
      if (item.box) {
        const b = item.box;
        ctx.strokeRect(b[0], b[1], b[2] - b[0], b[3] - b[1]);
        const label = item.class_name + (item.confidence != null ? " " + item.confidence.toFixed(2) : "");
        ctx.fillText(label, b[0] + 2, Math.max(b[1] - 3, 12 * scale));
      }
      (item.keypoints || []).forEach(function (k) {
        if (k[2] != null && k[2] < 0.5) return;
        ctx.beginPath(); ctx.arc(k[0], k[1], 3 * scale, 0, 2 * Math.PI); ctx.fill();
      });
    });
    return shown;
  }
  window.trainyardDraw = drawAnnotations;

  function setupModelTest() {
    const zone = document.getElementById("dropzone");
    if (!zone) return;
    const input = document.getElementById("test-files"), slider = document.getElementById("conf");
    const results = document.getElementById("test-results"), status = document.getElementById("test-status");
    const drawn = [];
    function redraw() {
      document.getElementById("conf-value").textContent = Number(slider.value).toFixed(2);
      let total = 0, shown = 0;
      drawn.forEach(function (d) {
        total += d.items.length;
        const n = drawAnnotations(d.canvas, d.image, d.items, Number(slider.value));
        shown += n;
        d.caption.textContent = d.text + " · " + n + " shown";
      });
      results.dataset.shown = String(shown);
      results.dataset.total = String(total);
    }
    function run(files) {
      const images = Array.from(files).filter(function (f) { return f.type.startsWith("image/"); });
      if (!images.length) return;
      const form = new FormData();
      images.forEach(function (f) { form.append("files", f, f.name); });
      status.textContent = "predicting " + images.length + " image(s)…";
      fetch(zone.dataset.predict, {
        method: "POST", body: form, headers: { "X-CSRF-Token": zone.dataset.csrf, "HX-Request": "true" },
      }).then(function (response) {
        if (!response.ok) {
          return response.text().then(function (html) {
            const box = document.createElement("div"); box.innerHTML = html;
            status.textContent = box.textContent.trim();
          });
        }
        return response.json().then(function (reply) {
          const t = reply.timing_ms || {};
          status.textContent = "worker " + reply.worker + (reply.cache_hit ? " (warm)" : " (loaded)") + " · " +
            Object.keys(t).map(function (k) { return k + " " + Number(t[k]).toFixed(1) + " ms"; }).join(", ");
          reply.results.forEach(function (result, i) {
            const figure = document.createElement("figure"), canvas = document.createElement("canvas");
            const caption = document.createElement("figcaption"), image = new Image();
            const speed = result.speed_ms || {};
            const items = result.detections || [];
            const text = result.name + " · " + items.length + " predicted" + (result.top_k ? " · top: " +
              result.top_k.map(function (c) { return c.class_name + " " + c.confidence.toFixed(2); }).join(", ") : "") +
              " · " + Object.keys(speed).map(function (k) { return k + " " + speed[k] + " ms"; }).join(", ");
            figure.appendChild(canvas); figure.appendChild(caption); results.prepend(figure);
            image.onload = function () {
              drawn.push({ canvas: canvas, image: image, items: items, caption: caption, text: text });
              redraw();
            };
            image.src = URL.createObjectURL(images[i]);
          });
        });
      }).catch(function (err) { status.textContent = "failed: " + err; });
    }
    input.addEventListener("change", function () { run(input.files); });
    slider.addEventListener("input", redraw);
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (e) { e.preventDefault(); zone.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (type) {
      zone.addEventListener(type, function () { zone.classList.remove("over"); });
    });
    zone.addEventListener("drop", function (e) { e.preventDefault(); run(e.dataTransfer.files); });
  }

  // ---- Dataset gallery: each image with its labels, drawn by the same code as predictions ----
  function setupGallery() {
    const dataEl = document.getElementById("gallery-data");
    if (!dataEl) return;
    const items = JSON.parse(dataEl.textContent), root = document.getElementById("gallery");
    let drawn = 0;
    items.forEach(function (item) {
      const figure = document.createElement("figure"), canvas = document.createElement("canvas");
      const caption = document.createElement("figcaption"), image = new Image();
      caption.textContent = item.task + " · " + item.split + " · " + item.name + " · " + item.annotations.length + " labels";
      figure.appendChild(canvas); figure.appendChild(caption); root.appendChild(figure);
      image.onload = function () {
        drawAnnotations(canvas, image, item.annotations, 0);
        drawn += 1;
        root.dataset.drawn = String(drawn);
      };
      image.onerror = function () { caption.textContent += " · image missing"; };
      image.src = dataEl.dataset.base + item.path.split("/").map(encodeURIComponent).join("/");
    });
  }

  // ---- A version's preview (swapped in by htmx): its sample images with their transformed labels ----
  function drawPreview(root) {
    root.querySelectorAll("script.preview-samples").forEach(function (dataEl) {
      const gallery = dataEl.parentElement.querySelector(".preview-gallery");
      let drawn = 0;
      JSON.parse(dataEl.textContent).forEach(function (item) {
        const figure = document.createElement("figure"), canvas = document.createElement("canvas");
        const caption = document.createElement("figcaption"), image = new Image();
        caption.textContent = item.split + " · " + item.name + " · " + item.annotations.length + " labels";
        figure.appendChild(canvas); figure.appendChild(caption); gallery.appendChild(figure);
        image.onload = function () {
          drawAnnotations(canvas, image, item.annotations, 0);
          drawn += 1;
          gallery.dataset.drawn = String(drawn);
        };
        image.src = item.src;
      });
    });
  }
  document.addEventListener("htmx:afterSwap", function (e) { drawPreview(e.target); });

  // ---- DICE ZIP upload with a progress bar ----
  function setupUpload() {
    const form = document.getElementById("upload");
    if (!form) return;
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      const bar = document.getElementById("upload-progress"), status = document.getElementById("upload-status");
      const xhr = new XMLHttpRequest();
      bar.hidden = false; bar.value = 0; status.textContent = "uploading…";
      xhr.upload.onprogress = function (p) { if (p.lengthComputable) bar.value = Math.round(100 * p.loaded / p.total); };
      xhr.upload.onload = function () { status.textContent = "validating…"; };
      xhr.onload = function () {
        const target = xhr.getResponseHeader("HX-Redirect");
        if (xhr.status < 300 && target) { window.location.assign(target); return; }
        const box = document.createElement("div"); box.innerHTML = xhr.responseText;
        status.textContent = box.textContent.trim();
      };
      xhr.onerror = function () { status.textContent = "upload failed"; };
      xhr.open("POST", form.action);
      xhr.setRequestHeader("HX-Request", "true");
      xhr.send(new FormData(form));
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
    setupModelTest();
    setupGallery();
    setupUpload();
  });
})();
