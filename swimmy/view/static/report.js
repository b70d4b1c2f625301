// The strategy report's charts: the equity curve and the drawdown, drawn by uPlot from the page's own JSON.
// The IS range, the walk-forward test windows and the holdout are shaded bands; nothing is fetched.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var COLORS = { is: "rgba(152,162,179,0.10)", wf: "rgba(47,111,219,0.14)", ho: "rgba(224,123,0,0.16)" };

  function bands() {
    var out = [{ from: data.is_range[0], to: data.is_range[1], color: COLORS.is }];
    var folds = (data.wfv && data.wfv.summary && data.wfv.summary.folds) || [];
    folds.forEach(function (f) { out.push({ from: f.test_start_ts, to: f.test_end_ts, color: COLORS.wf }); });
    if (data.holdout) { out.push({ from: data.holdout[0], to: data.holdout[1], color: COLORS.ho }); }
    return out;
  }

  function bandsPlugin(list) {
    return { hooks: { drawClear: [function (u) {
      var ctx = u.ctx, top = u.bbox.top, height = u.bbox.height;
      ctx.save();
      list.forEach(function (b) {
        var x0 = u.valToPos(b.from, "x", true), x1 = u.valToPos(b.to, "x", true);
        ctx.fillStyle = b.color;
        ctx.fillRect(Math.min(x0, x1), top, Math.max(1, Math.abs(x1 - x0)), height);
      });
      ctx.restore();
    }] } };
  }

  function chart(id, label, key, stroke, fill, height) {
    var el = document.getElementById(id);
    if (!el || !data.curve.t.length) { return null; }
    var lastX = data.holdout ? Math.max(data.holdout[1], data.curve.t[data.curve.t.length - 1]) : null;
    var opts = {
      width: Math.max(320, el.clientWidth || 900), height: height,
      plugins: [bandsPlugin(bands())],
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },  // UTC, as the tables
      scales: { x: { time: true, range: function (u, min, max) { return [data.curve.t[0], lastX || max]; } } },
      axes: [{}, { label: label, size: 64 }],
      series: [{}, { label: label, stroke: stroke, fill: fill, width: 1.5,
                     value: function (u, v) { return v == null ? "-" : v.toFixed(2) + " %"; } }],
      cursor: { sync: { key: "report" } },
    };
    var plot = new uPlot(opts, [data.curve.t, data.curve[key]], el);
    el.setAttribute("data-rendered", String(data.curve.t.length));
    return plot;
  }

  var plots = [
    chart("equity", "equity %", "equity", "#2f6fdb", "rgba(47,111,219,0.08)", 300),
    chart("drawdown", "drawdown %", "drawdown", "#c62828", "rgba(198,40,40,0.12)", 160),
  ];
  window.addEventListener("resize", function () {
    plots.forEach(function (p) { if (p) { p.setSize({ width: p.root.parentNode.clientWidth, height: p.height }); } });
  });
})();
