// Overview page: live values and uPlot time series fed by the server-sent event stream.
"use strict";
(function () {
  const ZONE_COLOURS = { A: "#2e9d46", B: "#9bc53d", C: "#f0a202", D: "#d7263d" };
  const init = JSON.parse(document.getElementById("overview-data").textContent);
  const historyS = init.history_s;
  const plots = {};
  // Lags from "report received by the SBC" to "page shows it", in ms (read by the bench).
  window.bpiiotLags = [];
  window.bpiiotReports = 0;

  function el(board, field, axis) {
    const sec = document.querySelector(`section[data-board="${CSS.escape(board)}"]`);
    if (!sec) return null;
    const scope = axis === undefined ? sec : sec.querySelector(`tr[data-axis="${axis}"]`);
    return scope.querySelector(`[data-f="${field}"]`);
  }
  function setText(node, text) { if (node) node.textContent = text; }

  function makePlot(board, series) {
    const node = document.getElementById("plot-" + board);
    if (!node) return;
    const width = Math.max(320, node.clientWidth || 800);
    const opts = {
      title: "Velocity RMS, last hour (mm/s)",
      width: width, height: 240,
      scales: { x: { time: true } },
      series: [
        {},
        { label: "x", stroke: "#1f77b4", width: 1.5 },
        { label: "y", stroke: "#ff7f0e", width: 1.5 },
        { label: "z", stroke: "#2ca02c", width: 1.5 },
        { label: "flagged window", stroke: "#d7263d", width: 0, paths: () => null,
          points: { show: true, size: 7, stroke: "#d7263d", fill: "#fff" } },
      ],
      axes: [{}, { label: "mm/s" }],
    };
    const data = [series.t, series.x, series.y, series.z, series.flagged];
    plots[board] = { data: data, plot: new uPlot(opts, data, node) };
  }

  for (const [board, b] of Object.entries(init.boards)) makePlot(board, b.series);

  function onReport(r) {
    const b = r.board;
    setText(el(b, "window_seq"), r.window_seq);
    setText(el(b, "uptime"), (r.board_time_ms / 1000).toFixed(0) + " s");
    setText(el(b, "temperature"), r.temperature_c === null ? "-" : r.temperature_c.toFixed(2) + " °C");
    for (let i = 0; i < 3; i++) {
      setText(el(b, "acc_rms", i), r.acc_rms_mg[i]);
      setText(el(b, "acc_peak", i), r.acc_peak_mg[i]);
      setText(el(b, "vel_rms", i), (r.vel_rms_um_s[i] / 1000).toFixed(2));
      const zone = el(b, "zone", i);
      if (zone) {
        const z = r.zones ? r.zones[i] : null;
        const span = zone.querySelector(".zone");
        span.textContent = z || "-";
        span.style.background = z ? ZONE_COLOURS[z] : "";
      }
    }
    const flags = el(b, "flags");
    if (flags) {
      flags.hidden = r.representative;
      flags.querySelector("span").textContent = r.flags.join(", ");
    }
    const p = plots[b];
    if (p) {
      const d = p.data;
      const v = r.vel_rms_um_s;
      d[0].push(r.received); d[1].push(v[0] / 1000); d[2].push(v[1] / 1000); d[3].push(v[2] / 1000);
      d[4].push(r.representative ? null : Math.max(v[0], v[1], v[2]) / 1000);
      const cut = r.received - historyS;
      let n = 0;
      while (n < d[0].length && d[0][n] < cut) n++;
      if (n) for (const col of d) col.splice(0, n);
      p.plot.setData(d);
    }
    window.bpiiotReports++;
    window.bpiiotLags.push(Date.now() - r.received * 1000);
    if (window.bpiiotLags.length > 1000) window.bpiiotLags.shift();
  }

  function onBoard(e) {
    if (e.state === "hello") {
      const version = (v) => (Array.isArray(v) ? v.join(".") : v);
      setText(el(e.board, "board_id"), e.board_id);
      setText(el(e.board, "firmware_version"), version(e.firmware_version));
      setText(el(e.board, "protocol_version"), version(e.protocol_version));
      setText(el(e.board, "boot_counter"), e.boot_counter);
    }
    const link = el(e.board, "link");
    if (link && (e.state === "connected" || e.state === "disconnected" || e.state === "hello")) {
      const up = e.state !== "disconnected";
      link.textContent = up ? "connected" : "disconnected";
      link.className = "state " + (up ? "up" : "down");
    }
  }

  function onLinkStats(e) {
    if (e.reboots !== undefined) setText(el(e.board, "reboots_seen"), e.reboots);
  }

  const eventList = document.getElementById("events");
  function describe(kind, e) {
    if (kind === "rule") return `rule ${e.rule} ${e.state} (value ${e.value}, window ${e.window_seq})`;
    if (kind === "incident") return `incident #${e.id} of rule ${e.rule}: ${e.state}`;
    if (kind === "tx") return `transaction ${e.contract}.${e.function}: ${e.state}` + (e.block ? ` in block ${e.block}` : "");
    if (kind === "log") return `${e.level}: ${e.text}`;
    return kind;
  }
  function onServiceEvent(kind, e) {
    if (!eventList) return;
    const hint = eventList.querySelector(".hint");
    if (hint) hint.remove();
    const li = document.createElement("li");
    li.dataset.kind = kind;
    const when = new Date(e.time * 1000).toLocaleTimeString();
    li.textContent = `${when} ${e.board ? e.board + ": " : ""}${describe(kind, e)}`;
    eventList.prepend(li);
    while (eventList.children.length > 20) eventList.lastChild.remove();
  }

  const live = document.getElementById("live");
  const es = new EventSource("/events");
  es.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  es.onerror = () => { live.textContent = "reconnecting…"; live.className = "live"; };
  es.addEventListener("report", (ev) => onReport(JSON.parse(ev.data)));
  es.addEventListener("board", (ev) => onBoard(JSON.parse(ev.data)));
  es.addEventListener("link_stats", (ev) => onLinkStats(JSON.parse(ev.data)));
  for (const kind of ["rule", "incident", "tx", "log"]) {
    es.addEventListener(kind, (ev) => onServiceEvent(kind, JSON.parse(ev.data)));
  }
  window.addEventListener("beforeunload", () => es.close());
})();
