// flowdeblur's page: uploads, options, progress, and the before/after comparison.
// Talks only to the server that served it: the WebSocket /ws (the session and its status)
// and the routes under /api/s/SESSION/ and /files/SESSION/.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  session: null, config: null, input: null, sharp: null, perPixel: null,
  job: null, result: null, shownJob: null, failedJob: null,
};
// The comparison: zoom (1-4), the image point at the canvas's top-left, the divider as a
// fraction of the width, the frame shown and its two stills.
const view = { zoom: 1, x: 0, y: 0, divider: 0.5, frame: 0, imgIn: null, imgOut: null };

// ------------------------------------------------------------------ messages and helpers

function say(text, kind = "error") {
  const box = $("message");
  box.textContent = text || "";
  box.className = kind;
  box.hidden = !text;
}

function clock(seconds) {
  if (seconds == null || !isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = String(m).padStart(h ? 2 : 1, "0"), ss = String(r).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function fileUrl(relative, download = false) {
  const path = relative.split("/").map(encodeURIComponent).join("/");
  return `/files/${state.session}/${path}${download ? "?download=1" : ""}`;
}

function answer(xhr) {
  let data = {};
  try { data = JSON.parse(xhr.responseText); } catch (e) { /* not JSON: said below */ }
  if (xhr.status >= 200 && xhr.status < 300) return { ok: true, ...data };
  return { ok: false, error: data.error || `the server answered ${xhr.status}` };
}

function request(url, body, onProgress) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    if (onProgress) xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => resolve(answer(xhr));
    xhr.onerror = () => resolve({ ok: false, error: "no answer from the server: is it still running?" });
    xhr.send(body === undefined ? null : body);
  });
}

// ------------------------------------------------------------------ the session

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "session") begin(msg);
    else if (msg.type === "status") showStatus(msg);
  };
  ws.onclose = () => {
    state.session = null;
    $("connection").textContent = "disconnected from the server: reload the page";
    updateControls();
  };
}

function fill(select, choices, chosen) {
  select.replaceChildren();
  for (const c of choices) {
    const value = typeof c === "object" ? c.value : c;
    const option = new Option(typeof c === "object" ? c.label : String(c), String(value));
    option.selected = String(value) === String(chosen);
    select.add(option);
  }
}

function begin(msg) {
  state.session = msg.session;
  const cfg = state.config = msg.config;
  fill($("opt-ensemble"), cfg.ensemble.choices, cfg.ensemble.default);
  fill($("opt-precision"), cfg.precision.choices, cfg.precision.default);
  fill($("opt-format"), cfg.format.choices, cfg.format.default);
  $("opt-scene-cuts").checked = cfg.scene_cuts.default;
  $("opt-fps").value = cfg.fps.default;
  $("connection").textContent = `connected; uploads up to ${cfg.max_upload_mb} MB`;
  updateControls();
}

// ------------------------------------------------------------------ uploads

function describe(info) {
  const what = info.kind === "video" ? info.names[0] : `${info.frames} images`;
  const fps = info.fps ? `, ${+info.fps.toFixed(3)} fps` : "";
  return `${what}: ${info.frames} frames of ${info.width}x${info.height}${fps}`;
}

async function upload(role, fileList) {
  if (!state.session || !fileList.length) return;
  const files = Array.from(fileList).sort(
    (a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
  const line = $(`${role}-info`);
  const total = files.reduce((sum, f) => sum + f.size, 0);
  const mb = state.config.max_upload_mb;
  state[role] = null;
  updateControls();
  if (total > mb * 1048576) {
    const what = files.length === 1 ? files[0].name : `these ${files.length} files`;
    say(`${what}: the upload is over the ${mb} MB limit (flowdeblur serve --max-upload-mb sets it)`);
    line.textContent = "";
    return;
  }
  say("");
  const base = `/api/s/${state.session}`;
  for (let i = 0; i < files.length; i++) {
    const f = files[i];
    const url = `${base}/upload?role=${role}&name=${encodeURIComponent(f.name)}${i ? "" : "&reset=1"}`;
    const r = await request(url, f, (part) => {
      line.textContent = `uploading ${files.length > 1 ? `${i + 1}/${files.length} ` : ""}${Math.round(100 * part)}%`;
    });
    if (!r.ok) { say(r.error); line.textContent = ""; return; }
  }
  line.textContent = "reading...";
  const r = await request(`${base}/probe?role=${role}`);
  if (!r.ok) { say(r.error); line.textContent = ""; return; }
  state[role] = r.info;
  line.textContent = describe(r.info);
  if (r.warnings.length) say(r.warnings.join("\n"), "note");
  updateControls();
}

function dropZone(zone, role) {
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    upload(role, e.dataTransfer.files);
  });
}

// ------------------------------------------------------------------ jobs

function active() {
  return state.job && ["queued", "running", "finishing"].includes(state.job.state);
}

function updateEstimate() {
  const ensemble = +$("opt-ensemble").value || 1;
  const clip = state.input;
  const est = clip && state.perPixel != null
    ? state.perPixel * clip.frames * clip.width * clip.height * ensemble : null;
  let text = "";
  if (est != null) {
    text = `about ${clock(est)} for ${state.input.frames} frames (estimated from this machine's speed)`;
    if (est > 60) text = `Long job: ${text}; Cancel stops it at any time`;
  }
  $("estimate").textContent = text;
}

function updateControls() {
  const busy = active();
  $("start").disabled = !state.session || !state.input || busy;
  $("cancel").disabled = !state.session || !busy;
  $("fps-label").hidden = !(state.input && state.input.kind === "images");
  updateEstimate();
}

async function start() {
  const choices = {
    ensemble: +$("opt-ensemble").value,
    precision: $("opt-precision").value,
    scene_cuts: $("opt-scene-cuts").checked,
    format: $("opt-format").value,
  };
  if (state.input.kind === "images") choices.fps = +$("opt-fps").value;
  say("");
  $("result").hidden = true;
  const r = await request(`/api/s/${state.session}/start`, JSON.stringify(choices));
  if (!r.ok) say(r.error);
  else showStatus(r);
}

function showStatus(s) {
  state.job = s.state === "idle" ? null : s;
  state.perPixel = s.seconds_per_pixel;
  const bar = $("progress"), text = $("progress-text");
  if (state.job) {
    bar.max = Math.max(1, s.total);
    bar.value = ["done"].includes(s.state) ? bar.max : s.done;
  }
  const left = s.seconds_left != null ? `, about ${clock(s.seconds_left)} left` : "";
  const lines = {
    idle: "",
    queued: s.ahead ? `waiting: ${s.ahead} job${s.ahead > 1 ? "s" : ""} ahead${left ? ` (this one${left.slice(1)})` : ""}` : "starting...",
    running: `deblurring: ${s.done} / ${s.total} frames${left}`,
    finishing: `making the previews and the side-by-side video: ${s.done} / ${s.total}`,
    done: `done: ${s.total} frames in ${clock(s.elapsed)}`,
    error: "failed",
    cancelled: "cancelled",
  };
  text.textContent = lines[s.state] || "";
  if (s.state === "error" && state.failedJob !== s.number) {
    state.failedJob = s.number;
    say(s.message);
  }
  $("warnings").replaceChildren(...(s.warnings || []).map((w) => {
    const li = document.createElement("li");
    li.textContent = w;
    return li;
  }));
  if (s.state === "done" && s.result && state.shownJob !== s.number) {
    state.shownJob = s.number;
    showResult(s.result);
  }
  updateControls();
}

// ------------------------------------------------------------------ the result

function showResult(result) {
  state.result = result;
  $("result").hidden = false;
  const slider = $("frame");
  slider.max = result.frames - 1;
  slider.value = 0;
  const zip = result.output.endsWith(".zip");
  const out = $("download-output");
  out.href = fileUrl(result.output, true);
  out.textContent = zip ? "Download the deblurred frames (.zip)" : "Download the deblurred video";
  $("download-side").href = fileUrl(result.side_by_side, true);
  $("flow-figure").hidden = !result.flow;
  $("metrics").hidden = !result.metrics;
  Object.assign(view, { zoom: 1, x: 0, y: 0, divider: 0.5, imgIn: null, imgOut: null });
  $("zoom").value = 100;
  loadFrame(0);
}

function metricRows(i) {
  const m = state.result.metrics;
  if (!m) return [];
  const f = m.per_frame[i];
  const num = (v, digits) => (v == null ? "-" : v === Infinity ? "\u221e" : v.toFixed(digits));
  return [
    [`input, frame ${i + 1}`, num(f.psnr_input, 2), num(f.ssim_input, 4)],
    [`deblurred, frame ${i + 1}`, num(f.psnr_output, 2), num(f.ssim_output, 4)],
    ["input, mean", num(m.mean.psnr_input, 2), num(m.mean.ssim_input, 4)],
    ["deblurred, mean", num(m.mean.psnr_output, 2), num(m.mean.ssim_output, 4)],
  ];
}

function loadFrame(i) {
  const r = state.result;
  view.frame = i;
  const name = r.previews[i];
  const a = new Image(), b = new Image();
  let loaded = 0;
  const ready = () => {
    if (++loaded < 2 || view.frame !== i) return;
    view.imgIn = a;
    view.imgOut = b;
    const canvas = $("compare");
    if (canvas.width !== a.naturalWidth || canvas.height !== a.naturalHeight) {
      canvas.width = a.naturalWidth;
      canvas.height = a.naturalHeight;
    }
    draw();
    canvas.dataset.frame = String(i);
  };
  a.onload = b.onload = ready;
  a.src = fileUrl(`${r.job}/preview/input/${name}`);
  b.src = fileUrl(`${r.job}/preview/output/${name}`);
  if (r.flow) $("flow").src = fileUrl(r.flow[i]);
  $("frame-text").textContent = `${i + 1} / ${r.frames}`;
  $("metrics").tBodies[0].replaceChildren(...metricRows(i).map((cells) => {
    const tr = document.createElement("tr");
    for (const c of cells) tr.insertCell().textContent = c;
    return tr;
  }));
}

function clampView() {
  const c = $("compare");
  view.x = Math.min(Math.max(0, view.x), c.width - c.width / view.zoom);
  view.y = Math.min(Math.max(0, view.y), c.height - c.height / view.zoom);
}

function draw() {
  const c = $("compare"), ctx = c.getContext("2d");
  const split = Math.round(view.divider * c.width);
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, c.width, c.height);
  ctx.imageSmoothingEnabled = false;  // zoomed pixels stay pixels
  for (const [img, x0, x1] of [[view.imgIn, 0, split], [view.imgOut, split, c.width]]) {
    if (!img || x1 <= x0) continue;
    ctx.save();
    ctx.beginPath();
    ctx.rect(x0, 0, x1 - x0, c.height);
    ctx.clip();
    ctx.setTransform(view.zoom, 0, 0, view.zoom, -view.x * view.zoom, -view.y * view.zoom);
    ctx.drawImage(img, 0, 0);
    ctx.restore();
  }
  const handle = $("divider");
  handle.style.left = `${view.divider * 100}%`;
  handle.setAttribute("aria-valuenow", String(Math.round(view.divider * 100)));
}

function setZoom(zoom, cx, cy) {
  // Zoom to ``zoom`` keeping the image point under canvas pixel (cx, cy) in place.
  const px = view.x + cx / view.zoom, py = view.y + cy / view.zoom;
  view.zoom = Math.min(4, Math.max(1, zoom));
  view.x = px - cx / view.zoom;
  view.y = py - cy / view.zoom;
  clampView();
  $("zoom").value = Math.round(view.zoom * 100);
  $("zoom-text").textContent = `${Math.round(view.zoom * 100)}%`;
  draw();
}

function canvasPoint(e) {
  const c = $("compare"), r = c.getBoundingClientRect();
  return [(e.clientX - r.left) * c.width / r.width, (e.clientY - r.top) * c.height / r.height,
    (e.clientX - r.left) / r.width];
}

function setupViewer() {
  const canvas = $("compare"), handle = $("divider");
  let drag = null;  // "divider" or {x, y, vx, vy} for a pan
  const move = (e) => {
    if (!drag) return;
    const [cx, cy, fraction] = canvasPoint(e);
    if (drag === "divider") {
      view.divider = Math.min(1, Math.max(0, fraction));
    } else {
      view.x = drag.vx - (cx - drag.x) / view.zoom;
      view.y = drag.vy - (cy - drag.y) / view.zoom;
      clampView();
    }
    draw();
  };
  handle.addEventListener("pointerdown", (e) => {
    drag = "divider";
    handle.setPointerCapture(e.pointerId);
    e.preventDefault();
  });
  canvas.addEventListener("pointerdown", (e) => {
    const [cx, cy] = canvasPoint(e);
    // Zoomed in, dragging the picture pans it; at 100% it moves the divider.
    drag = view.zoom > 1 ? { x: cx, y: cy, vx: view.x, vy: view.y } : "divider";
    canvas.setPointerCapture(e.pointerId);
    move(e);
  });
  for (const el of [canvas, handle]) {
    el.addEventListener("pointermove", move);
    el.addEventListener("pointerup", () => { drag = null; });
  }
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const [cx, cy] = canvasPoint(e);
    setZoom(view.zoom + (e.deltaY < 0 ? 0.25 : -0.25), cx, cy);
  }, { passive: false });
  handle.addEventListener("keydown", (e) => {
    const step = e.shiftKey ? 0.1 : 0.01;
    if (e.key === "ArrowLeft") view.divider = Math.max(0, view.divider - step);
    else if (e.key === "ArrowRight") view.divider = Math.min(1, view.divider + step);
    else return;
    e.preventDefault();
    draw();
  });
  $("zoom").addEventListener("input", (e) => {
    setZoom(e.target.value / 100, canvas.width / 2, canvas.height / 2);
  });
  $("frame").addEventListener("input", (e) => loadFrame(+e.target.value));
}

// ------------------------------------------------------------------ start

window.addEventListener("DOMContentLoaded", () => {
  $("input-files").addEventListener("change", (e) => { upload("input", e.target.files); e.target.value = ""; });
  $("sharp-files").addEventListener("change", (e) => { upload("sharp", e.target.files); e.target.value = ""; });
  dropZone($("drop"), "input");
  dropZone($("drop-sharp"), "sharp");
  $("start").addEventListener("click", start);
  $("cancel").addEventListener("click", () => request(`/api/s/${state.session}/cancel`));
  $("opt-ensemble").addEventListener("change", updateEstimate);
  setupViewer();
  connect();
});
