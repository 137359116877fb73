// The bedside page: one EventSource, one render function, one staleness clock. No build step, no libraries.
"use strict";

const STALE_AFTER_S = 2.5; // heartbeats come every second; three missed ones is a dead runtime
const FATTY_PDFF = 5;
const token = new URLSearchParams(location.search).get("token");
const withToken = (url) => (token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url);
let last = null; // the latest snapshot
let receivedAt = 0; // when it arrived (seconds, page clock)
let skipped = 0; // messages that failed their schema (never drawn)
let lastProblem = "";

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const fmt = (x, digits) => (x === null || x === undefined ? "n/a" : Number(x).toFixed(digits));
const nowS = () => Date.now() / 1000;

const coverageLabel = (c) => (c ? `${Math.round(100 * c)} % of patients like this one` : "interval");

function callBlock(result) {
  const exam = result.exam;
  if (exam && exam.call) {
    const [flo, fhi] = exam.pdff_interval || [exam.pdff, exam.pdff];
    const held = exam.stable_since ? `stable ${Math.max(0, result.frames[result.trigger].ts - exam.stable_since).toFixed(0)} s` : "";
    const pdff = `PDFF ${fmt(exam.pdff, 1)} % [${fmt(flo, 1)}-${fmt(fhi, 1)}] <span class="label">${coverageLabel(exam.pdff_coverage)}</span>`;
    const certified = exam.definite_error
      ? `definite calls <= ${Math.round(1000 * exam.definite_error) / 10} % wrong (certified on ${exam.definite_subjects} subjects)` : "";
    const set = exam.class_set ? `${exam.class_set.join(" or ") || "neither class"}` : "";
    const unsure = exam.call === "indeterminate";
    return {
      cls: exam.call, label: unsure ? "INDETERMINATE" : exam.call.toUpperCase(),
      sub: unsure ? "the model cannot tell" : certified,
      numbers: `${pdff} &middot; p ${fmt(exam.p_fatty, 2)}${set ? " &middot; " + esc(set) : ""}`,
      reason: `${exam.n_pairs} pairs, ${held}${exam.reason ? " &middot; " + esc(exam.reason) : ""}`,
      flags: (exam.discordant ? '<span class="discordant">DISCORDANT: PDFF and call disagree</span> ' : "") + (exam.calibrated ? "" : "uncalibrated p_fatty"),
    };
  }
  const pair = result.fatty ? "fatty" : "normal"; // no exam answer yet: show the latest pair, marked as such
  return {
    cls: "waiting", label: `pair: ${pair}`, sub: "one pair, not an exam answer",
    numbers: `PDFF ${fmt(Math.max(0, result.pdff), 1)} % &middot; p ${fmt(result.p_fatty, 2)} (one pair)`,
    reason: exam ? esc(exam.reason || "") : "",
    flags: "",
  };
}

function trendSvg(trend) {
  const w = 480, h = 120, pad = 4; // about a card's size on a 1920-wide monitor
  if (!trend.length) return `<svg class="trend" viewBox="0 0 ${w} ${h}"></svg>`;
  const values = trend.flatMap((p) => [p.pdff, ...(p.exam_interval || [])]).filter((v) => v !== null);
  const top = Math.max(10, ...values) * 1.1;
  const t0 = trend[0].ts, t1 = Math.max(trend[trend.length - 1].ts, t0 + 1);
  const x = (t) => pad + ((t - t0) / (t1 - t0)) * (w - 2 * pad);
  const y = (v) => h - pad - (v / top) * (h - 2 * pad);
  const line = (key) => trend.filter((p) => p[key] !== null).map((p) => `${x(p.ts).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
  const banded = trend.filter((p) => p.exam_interval);
  const band = banded.map((p) => `${x(p.ts).toFixed(1)},${y(p.exam_interval[1]).toFixed(1)}`)
    .concat(banded.slice().reverse().map((p) => `${x(p.ts).toFixed(1)},${y(p.exam_interval[0]).toFixed(1)}`)).join(" ");
  const dots = trend.map((p) => `<circle cx="${x(p.ts).toFixed(1)}" cy="${y(p.pdff).toFixed(1)}" r="1.6" fill="#7d8794"/>`).join("");
  return `<svg class="trend" viewBox="0 0 ${w} ${h}" role="img" aria-label="PDFF trend">
    <line x1="0" x2="${w}" y1="${y(FATTY_PDFF)}" y2="${y(FATTY_PDFF)}" stroke="#ff4d4d" stroke-dasharray="4 3"/>
    <text x="${w - 4}" y="${y(FATTY_PDFF) - 3}" fill="#ff8080" font-size="11" text-anchor="end">5 %</text>
    <polygon points="${band}" fill="#5cc8ff" fill-opacity="0.15"/>
    <text x="4" y="12" fill="#a8b0bb" font-size="11">PDFF ${top.toFixed(0)} %</text>
    ${dots}<polyline points="${line("exam_pdff")}" fill="none" stroke="#f2f4f7" stroke-width="2.5"/></svg>`;
}

// The hepatorenal index: the exam's, and the regions of the kidney-liver frame on its thumbnail (only when the
// thumbnail is that very frame: regions drawn on another frame would point at the wrong tissue).
function hriLine(exam) {
  const hri = exam && exam.hri;
  if (!hri) return "";
  if (hri.value === null || hri.value === undefined) return `HRI not measurable: ${esc((hri.why || "").replaceAll("_", " "))}`;
  const [lo, hi] = hri.interval;
  return `liver/cortex ${fmt(hri.value, 2)} (${fmt(lo, 2)}-${fmt(hi, 2)}) <span class="label">HRI, ${hri.frames} frame${hri.frames === 1 ? "" : "s"}</span>`;
}

function regionsSvg(reading, thumbUrl) {
  const seq = thumbUrl && Number(new URL(thumbUrl, location.href).searchParams.get("seq"));
  if (!reading || reading.value === null || !reading.box || seq !== reading.seq) return "";
  const [x, y, w, h] = reading.box;
  const outline = (points, cls) => `<polygon class="hri-region ${cls}" points="${points.map((p) => p.join(",")).join(" ")}"/>`;
  return `<svg class="regions" viewBox="${x} ${y} ${w} ${h}" preserveAspectRatio="none" aria-label="HRI regions">
    ${outline(reading.liver_region, "liver")}${outline(reading.cortex_region, "cortex")}</svg>`;
}

function card(s, unlinked) {
  const r = s.result;
  if (!r) return "";
  const report = unlinked.includes(s.session) ? '<div class="report">No PACS report: linked to no study</div>' : "";
  const c = callBlock(r);
  const thumbs = ["liver", "kidney_liver"].map((v) => s.thumbnails[v]
    ? `<figure><img alt="${v} crop" src="${withToken(s.thumbnails[v])}">${v === "kidney_liver" ? regionsSvg(r.hri, s.thumbnails[v]) : ""}<figcaption>${v.replace("_", "-")}</figcaption></figure>` : "").join("");
  // Stage names come from the result itself, in the runtime's declared order (edge_runtime.contracts.Stage).
  const lat = Object.entries(r.latency_ms)
    .map(([stage, ms]) => `${stage.replaceAll("_", " ")} ${fmt(ms, 0)} ms`).join(" &middot; ");
  return `<section class="card" data-session="${esc(s.session)}">
    <h2>${esc(s.session)}</h2>
    <div class="call ${c.cls}" data-call="${c.cls}">${c.label}</div>
    <div class="sub">${esc(c.sub)}</div>
    <div class="numbers">${c.numbers}</div>
    <div class="hri">${hriLine(r.exam)}</div>
    <div class="reason">${c.reason}</div>
    <div class="flags">${c.flags}</div>
    ${report}
    <div class="thumbs">${thumbs}</div>
    ${trendSvg(s.trend)}
    <div class="latency">${lat}</div></section>`;
}

// The PACS report queue: what waits, what went, and a red line while reports wait after a failed attempt.
function pacs(p) {
  const line = document.getElementById("pacs"), alert = document.getElementById("pacs-alert");
  if (!p) { line.textContent = ""; alert.hidden = true; return; }
  const oldest = p.oldest_age_s === null || p.oldest_age_s === undefined ? "" : `, oldest ${Math.round(p.oldest_age_s)} s`;
  line.textContent = `PACS reports: ${p.queued} queued${oldest}, ${p.sent} sent, ${p.failed} failed attempts`;
  const waiting = p.queued > 0 && p.failed > 0, set = p.quarantined || 0;
  const said = [];
  if (waiting) said.push(`${p.queued} REPORT(S) NOT YET IN THE PACS, retrying: ${p.last_error || "send failed"}`);
  if (set) {
    const newest = (p.quarantine || [])[(p.quarantine || []).length - 1] || {};
    said.push(`${set} REPORT(S) SET ASIDE, never sent: ${newest.reason || "cannot be built"} (session ${newest.session || "?"})`);
  }
  alert.hidden = said.length === 0;
  alert.textContent = said.join(" \u2014 ");
}

// Follow-up: each newest comparison with the patient's prior report, its words and the PDFF over the visits with
// their intervals (prior reports from the PACS, then this exam), drawn by date.
const CHANGE_CLASS = { decreased: "normal", increased: "fatty", no_change: "indeterminate" };
function visitsSvg(points) {
  const w = 480, h = 120, pad = 22;
  const days = points.map((p) => Date.parse(p.date) / 864e5), d0 = Math.min(...days), d1 = Math.max(...days, d0 + 1);
  const top = Math.max(10, ...points.flatMap((p) => (p.interval || [p.pdff]).concat(p.pdff))) * 1.1;
  const x = (d) => pad + ((d - d0) / (d1 - d0)) * (w - 2 * pad), y = (v) => h - 16 - (v / top) * (h - 26);
  const marks = points.map((p, i) => {
    const cx = x(days[i]).toFixed(1);
    const bar = p.interval ? `<line x1="${cx}" x2="${cx}" y1="${y(p.interval[0]).toFixed(1)}" y2="${y(p.interval[1]).toFixed(1)}" stroke="#5cc8ff" stroke-width="2"/>` : "";
    return `${bar}<circle cx="${cx}" cy="${y(p.pdff).toFixed(1)}" r="4" fill="#f2f4f7"/>` +
      `<text x="${cx}" y="${h - 3}" fill="#a8b0bb" font-size="11" text-anchor="middle">${esc(p.date)}</text>`;
  }).join("");
  return `<svg class="trend" viewBox="0 0 ${w} ${h}" role="img" aria-label="PDFF over visits">
    <line x1="0" x2="${w}" y1="${y(FATTY_PDFF)}" y2="${y(FATTY_PDFF)}" stroke="#ff4d4d" stroke-dasharray="4 3"/>
    <text x="4" y="12" fill="#a8b0bb" font-size="11">PDFF ${top.toFixed(0)} %</text>${marks}</svg>`;
}
function followups(p) {
  const area = document.getElementById("followups");
  const shown = ((p && p.followups) || []).slice(-3).reverse();
  area.hidden = shown.length === 0;
  area.innerHTML = shown.map((f) => {
    const points = (f.followup.history || []).filter((h) => h.pdff !== null)
      .map((h) => ({ date: h.date, pdff: h.pdff, interval: h.pdff_interval }));
    if (f.pdff !== null && f.pdff !== undefined && f.followup.date) points.push({ date: f.followup.date, pdff: f.pdff, interval: f.pdff_interval });
    const cls = CHANGE_CLASS[f.followup.statement] || "waiting";
    return `<section class="followup" data-session="${esc(f.session)}"><h2>follow-up: ${esc(f.session)}</h2>
      <div class="sub ${cls}" data-change="${esc(f.followup.statement)}">${esc(f.followup.reason)}</div>
      ${points.length ? visitsSvg(points) : ""}</section>`;
  }).join("");
}

// Every part of the box that failed since start (counted, named and survived), or what is dead or stalled.
function parts(health) {
  const line = document.getElementById("parts");
  if (!health) { line.textContent = ""; return; }
  const failing = Object.entries(health.parts || {}).filter(([, p]) => p.errors > 0)
    .map(([name, p]) => `${name} ${p.errors} (${p.last_error || "error"})`);
  line.textContent = (health.problem ? `PROBLEM: ${health.problem}; ` : "") + (failing.length ? `errors: ${failing.join(", ")}` : "");
  line.classList.toggle("problem", Boolean(health.problem));
}

// After go-live: the last reconciliation with MRI-PDFF, and each scanner whose recent exams left what the bundle
// was validated for (a red line naming the scanner and the statistic).
const DRIFT_WORDS = {
  guard_share: "exams flagged by the guard", indeterminate_share: "exams without a definite call",
  pdff_distribution: "PDFF estimates unlike validation (KS distance)",
  display_level: "display brightness unlike this console at go-live (KS distance)",
  display_step: "latest exams brighter or darker than this console at go-live (z)",
};
function siteWatch(hb) {
  const line = document.getElementById("outcomes"), alert = document.getElementById("drift-alert");
  const o = hb.outcomes;
  line.textContent = o ? `real-world check: ${o.verdict.toUpperCase()} on ${o.exams} MRI-matched exams` +
    (o.failing.length ? ` (misses ${o.failing.join(", ")})` : "") : "";
  line.classList.toggle("problem", Boolean(o && o.verdict === "fail"));
  const alarms = hb.drift || [];
  alert.hidden = alarms.length === 0;
  alert.textContent = alarms.map((a) => `DRIFT on ${a.scanner}: ${DRIFT_WORDS[a.statistic] || a.statistic} ` +
    `${a.value.toFixed(2)} over its last ${a.exams} exams (bound ${a.bound.toFixed(2)}, validation ${a.expected.toFixed(2)})`)
    .join(" \u2014 ");
}

function health(snap) {
  const hb = snap.heartbeat, m = snap.metrics;
  if (hb) {
    document.getElementById("model").textContent = `model ${hb.model.name} ${hb.model.version} (sha ${hb.model.sha})`;
    const unsigned = document.getElementById("unsigned");
    unsigned.hidden = Boolean(hb.model.signed_by);
    unsigned.textContent = "UNSIGNED BUNDLE: development only, not for patients";
    const audit = document.getElementById("audit"), failing = Boolean(hb.audit && !hb.audit.ok);
    audit.hidden = !failing;
    audit.textContent = failing ? `RESULTS ARE NOT BEING RECORDED: ${hb.audit.error || "audit log write failed"}` : "";
    document.getElementById("uptime").textContent = `uptime ${Math.round(hb.uptime_s)} s, ${hb.sessions} sessions`;
    pacs(hb.pacs);
    followups(hb.pacs);
    parts(hb.health);
    siteWatch(hb);
    if (hb.validation) document.getElementById("validation").textContent = `Validation cohort: ${hb.validation}`;
  }
  if (m) {
    const c = m.counters;
    document.getElementById("frames").textContent =
      `frames in ${c.frames_received || 0}, encoded ${c.frames_encoded || 0}, dropped ${c.frames_dropped_stale || 0}`;
    const rej = Object.entries(m.rejected).map(([k, v]) => `${k} ${v}`).join(", ");
    document.getElementById("rejected").textContent = `rejected: ${rej || "none"}`;
  }
}

// Only what passes the runtime's schemas is drawn; the rest is counted in the footer.
function checked(name, value) {
  if (value === null || value === undefined) return value;
  const problem = messageProblem(name, value);
  if (!problem) return value;
  skipped += 1;
  lastProblem = problem;
  return null;
}

function render(snap) {
  snap.heartbeat = checked("heartbeat", snap.heartbeat);
  snap.metrics = checked("metrics", snap.metrics);
  snap.sessions = snap.sessions.map((s) => ({ ...s, result: checked("result", s.result) }));
  document.getElementById("skipped").textContent = skipped ? `skipped ${skipped} malformed (${lastProblem})` : "";
  const main = document.getElementById("sessions");
  const unlinked = (snap.heartbeat && snap.heartbeat.pacs && snap.heartbeat.pacs.unlinked) || [];
  const cards = snap.sessions.map((s) => card(s, unlinked)).join("");
  main.innerHTML = cards || '<p class="empty" id="empty">No active exams. Waiting for the scanner...</p>';
  health(snap);
  tick();
}

function tick() {
  // Staleness from the page's own clock, so it shows even when the display's event stream is gone too.
  const age = last && last.heartbeat_age_s !== null ? last.heartbeat_age_s + (nowS() - receivedAt) : null;
  const stale = age === null || age > STALE_AFTER_S;
  document.body.classList.toggle("stale", stale);
  document.getElementById("stale").hidden = !stale;
  document.getElementById("stale-why").textContent =
    age === null ? "no heartbeat from the runtime yet" : `no heartbeat from the runtime for ${age.toFixed(0)} s`;
  document.getElementById("heartbeat").textContent = age === null ? "heartbeat: none" : `heartbeat ${age.toFixed(1)} s ago`;
}

function connect() {
  const source = new EventSource(withToken("events"));
  source.addEventListener("state", (e) => {
    try {
      last = JSON.parse(e.data);
      receivedAt = nowS();
      render(last);
    } catch (err) {
      console.warn("skipped a malformed update", err);
    }
  });
  // EventSource reconnects by itself after an error; the staleness clock keeps running meanwhile.
}

setInterval(tick, 250);
tick();
loadSchemas(["result", "heartbeat", "metrics"], withToken).finally(connect);
