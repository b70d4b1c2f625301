// The dashboard: polls /api/dashboard every 5 s and redraws; no build step, nothing fetched from elsewhere.
(function () {
  "use strict";
  var REFRESH_MS = 5000;
  var SERIES = [["S", "#d4a017"], ["A", "#2f6fdb"], ["B", "#1a7f37"], ["incubator", "#98a2b3"]];
  var plot = null;

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text != null) { e.textContent = String(text); }
    return e;
  }
  function num(v, d) { return v == null ? "–" : (d === 0 ? Math.round(v).toLocaleString() : Number(v).toFixed(d)); }
  function pct(v) { return v == null ? "–" : (v * 100).toFixed(1) + " %"; }
  function duration(s) {
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return h ? h + " h " + m + " min" : m + " min " + Math.floor(s % 60) + " s";
  }

  function cards(d) {
    var f = d.figures, box = document.getElementById("cards");
    var items = [
      ["population", ["S", "A", "B", "incubator", "graveyard"].map(function (r) {
        return r + " " + num(f.strategies[r] || 0, 0); }).join(" · ")],
      ["trials", num(f.trials, 0)],
      ["backtests / s", num(f.backtests_per_sec, 0)],
      ["workers", f.workers_alive + " / " + f.workers_configured + (f.workers_ready != null ? " (" + f.workers_ready + " ready)" : "")],
      ["OOS · WFV pending", num(f.oos_pending, 0) + " · " + num(f.wfv_pending, 0)],
    ];
    Object.keys(f.universes).forEach(function (u) {
      var x = f.universes[u];
      items.push([u, "trials " + num(x.trials, 0) + " · N_eff " + num(x.n_eff, 1) + " · PBO " + num(x.pbo, 2) +
                     (x.usable ? "" : " · paused")]);
    });
    box.replaceChildren.apply(box, items.map(function (it) {
      var c = el("section", { "class": "card" });
      c.appendChild(el("h3", {}, it[0]));
      c.appendChild(el("div", {}, it[1]));
      return c;
    }));
  }

  function population(d) {
    var p = d.population, box = document.getElementById("population");
    var data = [p.t].concat(SERIES.map(function (s) { return p[s[0]]; }));
    if (!plot) {
      plot = new uPlot({
        width: Math.max(320, box.clientWidth || 1000), height: 240,
        scales: { x: { time: true } },
        tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },  // UTC, as every time here
        series: [{}].concat(SERIES.map(function (s) { return { label: s[0], stroke: s[1], width: 2 }; })),
        axes: [{}, { label: "strategies", size: 60 }],
      }, data, box);
    } else {
      plot.setData(data);
    }
    if (p.t.length === 1) {  // one sample so far (the daemon just started): show the last ten minutes, not years
      plot.setScale("x", { min: p.t[0] - 600, max: p.t[0] + 60 });
    }
    box.setAttribute("data-points", String(p.t.length));
  }

  function top(d) {
    var body = document.querySelector("#top tbody");
    body.replaceChildren.apply(body, d.top.map(function (s) {
      var tr = el("tr");
      var name = el("td", { "class": "l" });
      name.appendChild(el("a", { href: "/strategies/" + encodeURIComponent(s.name) }, s.name));
      tr.appendChild(name);
      var rank = el("td", { "class": "l" });
      rank.appendChild(el("span", { "class": "badge rank-" + s.rank }, s.rank));
      tr.appendChild(rank);
      tr.appendChild(el("td", { "class": "l" }, s.universe));
      tr.appendChild(el("td", {}, num(s.sharpe, 2)));
      tr.appendChild(el("td", {}, num(s.dsr, 3)));
      tr.appendChild(el("td", {}, num(s.trades, 0)));
      tr.appendChild(el("td", {}, pct(s.max_drawdown)));
      tr.appendChild(el("td", { "class": "l " + (s.oos || "") }, s.oos ? s.oos + " (" + num(s.oos_sharpe, 2) + ")" : "–"));
      tr.appendChild(el("td", { "class": "l" }, s.wfv || "–"));
      return tr;
    }));
    document.getElementById("top").setAttribute("data-rows", String(d.top.length));
  }

  function milestones(d) {
    var list = document.getElementById("milestones");
    list.replaceChildren.apply(list, d.milestones.map(function (m) {
      var li = el("li", { "class": m.severity === "info" ? "" : m.severity });
      li.appendChild(el("time", {}, m.ts.slice(11, 19)));
      li.appendChild(document.createTextNode(m.text));
      return li;
    }));
  }

  function render(d) {
    var status = document.getElementById("status");
    status.textContent = d.status;
    status.className = "badge " + d.status;
    document.getElementById("subtitle").textContent = "version " + d.version + " · up " + duration(d.uptime_sec) +
      " · run " + d.run_id + " · updated " + d.generated_at;
    var reasons = document.getElementById("reasons");
    reasons.replaceChildren.apply(reasons, d.reasons.map(function (r) { return el("li", { "class": "warning" }, r); }));
    cards(d); population(d); top(d); milestones(d);
    document.body.setAttribute("data-updated", d.generated_at);
  }

  function refresh() {
    fetch("/api/dashboard", { cache: "no-store", credentials: "same-origin" }).then(function (r) {
      if (r.status === 401) { window.location.assign("/login"); throw new Error("this dashboard needs the token"); }
      if (!r.ok) { throw new Error("the daemon answered " + r.status); }
      return r.json();
    }).then(render).catch(function (e) {
      var status = document.getElementById("status");
      status.textContent = "unreachable";
      status.className = "badge DEGRADED";
      document.getElementById("subtitle").textContent = String(e.message || e);
    });
  }

  refresh();
  setInterval(refresh, REFRESH_MS);
  window.addEventListener("resize", function () {
    if (plot) { plot.setSize({ width: document.getElementById("population").clientWidth, height: 240 }); }
  });
})();
