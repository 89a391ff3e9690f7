// The pathway app's charts (Chart.js, vendored from npm: no network at run time) and accept/decline feedback.
"use strict";
(function () {
  const view = JSON.parse(document.getElementById("view").textContent);
  const DAY = 86400000;
  const day = (iso) => Date.parse(iso + "T00:00:00Z");
  const label = (ms) => new Date(ms).toISOString().slice(0, 10);

  // Grade bands and date markers drawn under the data (a small inline Chart.js plugin).
  const bandsAndMarkers = {
    id: "bandsAndMarkers",
    beforeDatasetsDraw(chart, _args, options) {
      const { ctx, chartArea: area, scales: { x, y } } = chart;
      ctx.save();
      for (const band of options.bands || []) {
        const a = y.getPixelForValue(Math.min(band.to, y.max));
        const b = y.getPixelForValue(Math.max(band.from, y.min));
        const top = Math.max(Math.min(a, b), area.top), bottom = Math.min(Math.max(a, b), area.bottom);
        if (bottom <= top) continue;
        ctx.fillStyle = band.color;
        ctx.fillRect(area.left, top, area.right - area.left, bottom - top);
        ctx.fillStyle = "#44515e";
        ctx.font = "11px system-ui, sans-serif";
        ctx.textAlign = "right";
        ctx.fillText(band.label, area.right - 4, bottom - 4);  // bottom right: clear of the date markers' labels
        ctx.textAlign = "left";
      }
      for (const line of options.hlines || []) {
        const py = y.getPixelForValue(line.value);
        ctx.strokeStyle = line.color; ctx.setLineDash([2, 3]);
        ctx.beginPath(); ctx.moveTo(area.left, py); ctx.lineTo(area.right, py); ctx.stroke();
      }
      for (const marker of options.markers || []) {
        const px = x.getPixelForValue(marker.at);
        if (px < area.left || px > area.right) continue;
        ctx.strokeStyle = marker.color; ctx.setLineDash([5, 4]); ctx.lineWidth = 1.5;
        ctx.beginPath(); ctx.moveTo(px, area.top); ctx.lineTo(px, area.bottom); ctx.stroke();
        ctx.fillStyle = marker.color; ctx.font = "11px system-ui, sans-serif";
        ctx.fillText(marker.label, Math.min(px + 3, area.right - 70), area.top + 11);
      }
      ctx.restore();
    },
  };

  const markers = [];
  if (view.markers.lineStart) markers.push({ at: day(view.markers.lineStart), label: "line 1 start", color: "#2b7bb9" });
  if (view.markers.progression) markers.push({ at: day(view.markers.progression), label: "progression", color: "#c0392b" });

  function draw(id, points, yOf, options) {
    const canvas = document.getElementById(id);
    if (!canvas || !points.length) { if (canvas) canvas.hidden = true; return; }
    const data = points.map((p) => ({ x: day(p.date), y: yOf(p), raw: p }));
    const xs = data.map((p) => p.x).concat(markers.map((m) => m.at));
    const chart = new Chart(canvas, {
      type: "line",
      data: { datasets: [{ data, borderColor: "#24425f", backgroundColor: "#24425f", pointRadius: 4,
                           tension: 0, stepped: options.stepped || false }] },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        parsing: false,
        scales: {
          x: { type: "linear", min: Math.min(...xs) - 10 * DAY, max: Math.max(...xs) + 10 * DAY,
               ticks: { callback: (value) => label(value), maxTicksLimit: 6 } },
          y: { reverse: options.reverse || false, min: options.min, max: options.max,
               ticks: options.ticks || {}, title: { display: true, text: options.unit } },
        },
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { title: (items) => label(items[0].parsed.x),
                                  label: (item) => options.tip(item.raw.raw) } },
          bandsAndMarkers: { bands: options.bands || [], hlines: options.hlines || [], markers },
        },
      },
      plugins: [bandsAndMarkers],
    });
    canvas.dataset.rendered = String(chart.data.datasets[0].data.length);
  }

  const s = view.series;
  const albiValues = s.albi.map((p) => p.score);
  const nice = (value, step) => Math.ceil(value / step) * step;
  draw("chart-albi", s.albi, (p) => p.score, {
    unit: "ALBI score", reverse: true, ticks: { stepSize: 0.5 },
    min: -nice(-Math.min(-3.0, ...albiValues) + 0.1, 0.5), max: nice(Math.max(-1.0, ...albiValues) + 0.1, 0.5),
    bands: [{ from: -10, to: -2.60, color: "rgba(46, 160, 67, .12)", label: "grade 1" },
            { from: -2.60, to: -1.39, color: "rgba(224, 168, 0, .13)", label: "grade 2" },
            { from: -1.39, to: 10, color: "rgba(192, 57, 43, .13)", label: "grade 3" }],
    tip: (p) => `ALBI ${p.score.toFixed(2)}, grade ${p.grade} (mALBI ${p.mAlbiGrade}); bilirubin ${p.bilirubin} µmol/L, albumin ${p.albumin} g/L`,
  });
  draw("chart-ecog", s.ecog, (p) => p.value, { unit: "ECOG", min: 0, max: 5, stepped: false,
    ticks: { stepSize: 1 }, bands: [{ from: 2, to: 5, color: "rgba(192, 57, 43, .10)", label: "ECOG ≥ 2" }],
    tip: (p) => `ECOG ${p.value} (${p.source})` });
  draw("chart-afp", s.afp, (p) => p.value, { unit: "ng/mL", min: 0,
    max: nice(Math.max(500, ...s.afp.map((p) => p.value)) * 1.1, 100), hlines: [{ value: 400, color: "#c0392b" }],
    tip: (p) => `AFP ${p.value} ng/mL` });
  draw("chart-lesions", s.lesion_sum, (p) => p.mm, { unit: "mm", min: 0,
    max: nice(Math.max(...s.lesion_sum.map((p) => p.mm)) * 1.15, 10) || 10,
    tip: (p) => `${p.mm} mm over ${p.lesions} lesion${p.lesions === 1 ? "" : "s"}` });

  async function send(article, outcome) {
    const result = article.querySelector(".result");
    const reason = article.querySelector(".reason").value;
    if (outcome === "declined" && !reason) { result.textContent = "choose a reason to decline"; return; }
    const response = await fetch("/app/feedback", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": view.csrf },
      body: JSON.stringify({ option: article.dataset.option, outcome, reason: reason || undefined }),
    });
    const json = await response.json().catch(() => ({}));
    result.textContent = response.ok ? (outcome === "accepted" ? "accepted: feedback stored"
                                                                : "declined: feedback stored")
                                     : `not stored: ${json.error || response.status}`;
    result.dataset.outcome = response.ok ? outcome : "error";
  }
  for (const article of document.querySelectorAll("article.option")) {
    article.querySelector(".accept").addEventListener("click", () => send(article, "accepted"));
    article.querySelector(".decline").addEventListener("click", () => send(article, "declined"));
  }
})();
