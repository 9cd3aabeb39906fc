// Interactive charts: each server-drawn chart panel (an SVG plus its numbers as a JSON block,
// see templates/runs/_chart.html) becomes a uPlot chart with hover values, drag-to-zoom on x
// (double-click resets), EMA smoothing, a log y scale and series toggles (click the legend).
// The SVG stays as the view without JavaScript. A live run's panels are replaced by htmx every
// 2 s: the chart (and the user's zoom, smoothing, log scale and hidden series) moves into the
// new panel and only its data changes.
"use strict";

(function () {
  if (typeof uPlot === "undefined") return;

  const HEIGHT = 240;
  const charts = new Map(); // page path + panel key -> the live chart and its user state

  // 4 significant digits, thousands grouped, small numbers spelled out: never 1e+06 or 1e-7.
  const whole = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
  const tenths = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });
  function readable(v) {
    if (v == null || !Number.isFinite(v)) return "–";
    if (v === 0) return "0";
    const m = Math.abs(v);
    if (m >= 1e4) return whole.format(v);
    if (m >= 1e3) return tenths.format(v);
    const digits = Math.min(100, Math.max(0, 3 - Math.floor(Math.log10(m))));
    const text = v.toFixed(digits);
    return text.indexOf(".") < 0 ? text : text.replace(/0+$/, "").replace(/\.$/, "");
  }

  // TensorBoard's smoothing: an exponential moving average, debiased so the start is not pulled to 0.
  function smooth(values, weight) {
    if (!weight) return values;
    let last = 0;
    let n = 0;
    return values.map(function (v) {
      if (v == null || !Number.isFinite(v)) return null;
      last = last * weight + (1 - weight) * v;
      n += 1;
      return last / (1 - Math.pow(weight, n));
    });
  }

  function lineData(spec, state) {
    const tables = spec.series.map(function (s) {
      let values = smooth(s.values, state.smoothing);
      if (state.log) values = values.map(function (v) { return v != null && v > 0 ? v : null; });
      return [s.steps, values];
    });
    if (!tables.length) return [[]];
    return uPlot.join(tables);
  }

  function barData(spec) {
    return [spec.labels.map(function (_, i) { return i; })].concat(spec.series.map(function (s) { return s.values; }));
  }

  function axisSize(u, values) {
    if (!values || !values.length) return 50;
    return Math.max(40, 20 + 8 * Math.max.apply(null, values.map(function (v) { return String(v).length; })));
  }

  // A log axis leaves the splits it does not label as null: they stay blank.
  function tickLabels(unit) {
    return function (u, splits) {
      return splits.map(function (v) { return v == null ? "" : readable(v) + unit; });
    };
  }

  function lastValue(values) {
    for (let i = values ? values.length - 1 : -1; i >= 0; i--) if (values[i] != null) return values[i];
    return null;
  }

  function options(entry, width) {
    const spec = entry.spec;
    const state = entry.state;
    const bars = spec.kind === "bars";
    const series = [{
      label: bars ? "run" : (spec.x_label || "step"),
      value: bars
        ? function (u, i) { return i == null ? "–" : spec.labels[i]; }
        : function (u, v, si, idx) { return idx == null ? "latest" : readable(v); },
    }];
    spec.series.forEach(function (s) {
      series.push({
        label: s.label,
        stroke: s.color,
        fill: bars ? s.color : undefined,
        width: bars ? 1 : 2,
        dash: s.dash && s.dash.length ? s.dash : undefined,
        spanGaps: true,
        show: !state.hidden[s.label],
        paths: bars ? uPlot.paths.bars({ size: [0.7, 80], align: 0 }) : undefined,
        points: bars ? { show: false } : undefined,
        value: function (u, v, si, idx) {
          if (idx == null && !bars) v = lastValue(u.data[si]); // not hovering: the latest value, like W&B
          return v == null ? "–" : readable(v) + (bars ? "%" : "");
        },
      });
    });
    const n = bars ? spec.labels.length : 0;
    return {
      width: width,
      height: HEIGHT,
      series: series,
      scales: bars
        ? { x: { time: false, range: [-0.5, n - 0.5] }, y: { range: [0, 100] } }
        : { x: { time: false }, y: state.log ? { distr: 3, log: 10 } : {} },
      axes: [
        bars
          ? {
            splits: function () { return spec.labels.map(function (_, i) { return i; }); },
            values: function (u, splits) { return splits.map(function (i) { return n <= 20 ? spec.labels[i] || "" : ""; }); },
          }
          : { values: tickLabels("") },
        { size: axisSize, values: tickLabels(bars ? "%" : "") },
      ],
      cursor: bars ? { y: false, drag: { x: false, y: false } } : { drag: { x: true, y: false, setScale: true } },
      legend: { live: true },
      hooks: {
        setScale: [function (u, key) {
          if (key !== "x" || bars || entry.settingData) return;
          const xs = u.data[0];
          if (!xs || !xs.length) return;
          const min = u.scales.x.min;
          const max = u.scales.x.max;
          state.zoom = min > xs[0] || max < xs[xs.length - 1] ? [min, max] : null;
          reflect(entry);
        }],
        setSeries: [function (u, i, opts) {
          if (i == null || !opts || !("show" in opts)) return;
          state.hidden[u.series[i].label] = !opts.show;
          reflect(entry);
        }],
      },
    };
  }

  // What the chart shows, as attributes on the panel: for people reading the DOM and for the tests.
  function reflect(entry) {
    const panel = entry.panel;
    const state = entry.state;
    panel.dataset.scale = state.log ? "log" : "linear";
    panel.dataset.smoothing = String(state.smoothing);
    panel.dataset.points = String(entry.u ? entry.u.data[0].length : 0);
    if (state.zoom) panel.dataset.zoom = state.zoom.map(readable).join("–");
    else delete panel.dataset.zoom;
    const hidden = Object.keys(state.hidden).filter(function (k) { return state.hidden[k]; });
    if (hidden.length) panel.dataset.hidden = hidden.join(", ");
    else delete panel.dataset.hidden;
  }

  function data(entry) {
    return entry.spec.kind === "bars" ? barData(entry.spec) : lineData(entry.spec, entry.state);
  }

  function build(entry) {
    if (entry.u) entry.u.destroy();
    entry.u = new uPlot(options(entry, entry.plot.clientWidth || 600), data(entry), entry.plot);
    if (entry.state.zoom) entry.u.setScale("x", { min: entry.state.zoom[0], max: entry.state.zoom[1] });
    entry.signature = signature(entry.spec);
    reflect(entry);
  }

  // New data into the same chart: kept zoomed where the user zoomed, else widened to the new points.
  function refresh(entry) {
    const zoom = entry.state.zoom;
    entry.settingData = true;
    try {
      entry.u.setData(data(entry), !zoom);
    } finally {
      entry.settingData = false;
    }
    if (zoom) entry.u.setScale("x", { min: zoom[0], max: zoom[1] });
    reflect(entry);
  }

  function signature(spec) {
    return spec.kind + "|" + spec.series.map(function (s) { return s.label; }).join("|") + "|" + (spec.labels || []).join("|");
  }

  function tools(entry) {
    const box = document.createElement("div");
    box.className = "chart-tools";
    if (entry.spec.kind === "bars") {
      box.textContent = "Hover a bar for its run and accuracy; click a legend entry to hide it.";
      return box;
    }
    const smoothing = document.createElement("label");
    const range = document.createElement("input");
    range.type = "range";
    range.min = "0";
    range.max = "0.99";
    range.step = "0.01";
    range.value = String(entry.state.smoothing);
    range.className = "chart-smoothing";
    const shown = document.createElement("output");
    shown.textContent = String(entry.state.smoothing);
    range.addEventListener("input", function () {
      entry.state.smoothing = Number(range.value);
      shown.textContent = range.value;
      refresh(entry);
    });
    smoothing.append("Smoothing ", range, shown);

    const log = document.createElement("label");
    const box2 = document.createElement("input");
    box2.type = "checkbox";
    box2.className = "chart-log";
    box2.checked = entry.state.log;
    box2.addEventListener("change", function () {
      entry.state.log = box2.checked;
      build(entry); // a scale's distribution is fixed when the chart is made
    });
    log.append(box2, " log scale");

    const hint = document.createElement("span");
    hint.textContent = "drag to zoom · double-click to reset · click a legend entry to hide it";
    box.append(smoothing, log, hint);
    return box;
  }

  function upgrade(panel) {
    if (panel.classList.contains("upgraded")) return;
    const source = document.getElementById(panel.dataset.chartData);
    if (!source) return;
    const spec = JSON.parse(source.textContent);
    const key = location.pathname + "#" + panel.dataset.chart;
    let entry = charts.get(key);
    if (entry && entry.panel !== panel) {
      // htmx replaced the panel: carry the chart over instead of drawing it from scratch.
      panel.append(entry.wrap);
      entry.panel = panel;
      entry.spec = spec;
      panel.classList.add("upgraded");
      if (signature(spec) === entry.signature) refresh(entry);
      else build(entry);
      return;
    }
    entry = {
      panel: panel,
      spec: spec,
      state: { smoothing: 0, log: false, hidden: {}, zoom: null },
      wrap: document.createElement("div"),
      plot: document.createElement("div"),
      u: null,
      signature: "",
      settingData: false,
    };
    entry.plot.className = "chart-plot";
    entry.wrap.className = "chart-live";
    entry.wrap.append(tools(entry), entry.plot);
    panel.append(entry.wrap);
    panel.classList.add("upgraded");
    charts.set(key, entry);
    build(entry);
    if (typeof ResizeObserver !== "undefined") {
      let width = entry.plot.clientWidth;
      new ResizeObserver(function () {
        const now = entry.plot.clientWidth;
        if (entry.u && now && now !== width) {
          width = now;
          entry.u.setSize({ width: now, height: HEIGHT });
        }
      }).observe(entry.plot);
    }
  }

  function upgradeAll(root) {
    const panels = root.matches && root.matches("[data-chart-data]") ? [root] : [];
    root.querySelectorAll("[data-chart-data]").forEach(function (p) { panels.push(p); });
    panels.forEach(upgrade);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { upgradeAll(document.body); });
  } else {
    upgradeAll(document.body);
  }
  document.addEventListener("htmx:load", function (event) { upgradeAll(event.detail.elt); });
})();
