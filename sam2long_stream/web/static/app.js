// The sam2long-stream page: publish a camera over WHIP, draw the node's masks over it.
// Masks come over a WebSocket (/ws) that relays the node's ZeroMQ output; boxes go back
// over it to the node's control socket. See docs/wire-format.md, "Browser page".
"use strict";

const cfg = window.SAM2_CONFIG;
const $ = (id) => document.getElementById(id);
const video = $("video");
const overlay = $("overlay");
const ui = $("ui");

// What the page saw, for people (the info line) and for tests (window.sam2).
const sam2 = (window.sam2 = {
  state: "idle", // idle | publishing | <RTCPeerConnection.connectionState> | error
  wsOpen: false,
  masks: 0, // masks messages received
  drawn: 0, // masks messages drawn on the overlay
  lastMasks: null, // header of the last masks message (without the RLE strings)
  status: null, // last status message
  replies: [], // replies to add_box / reset / remove
  errors: [],
  fps: null,
  latencyMs: null,
  nodeLatencyMs: null,
  clockOffsetMs: null, // node clock - page clock
  location: null, // WHIP session URL
  offerKinds: [], // media of the last offer, in order ("audio", "video")
  publishes: 0,
});

// Indexed by object id; ids 1, 2, 3 (the usual first ones) stand out on green and grey.
const PALETTE = [
  [60, 180, 75], [230, 25, 75], [0, 130, 200], [255, 225, 25], [145, 30, 180],
  [245, 130, 48], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
];
const color = (id) => PALETTE[((id % PALETTE.length) + PALETTE.length) % PALETTE.length];

function log(text) {
  $("log").textContent = text || "";
  if (text) sam2.errors.push(text);
}

function setState(s) {
  sam2.state = s;
  $("state").textContent = s;
}

// ---------------------------------------------------------------- COCO RLE

// COCO's compressed counts string -> run lengths (column-major, zeros first).
function rleCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = 1;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++;
      k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// ---------------------------------------------------------------- drawing

const maskCanvas = document.createElement("canvas");
const maskCtx = maskCanvas.getContext("2d");

function frameSize() {
  if (sam2.lastMasks) return [sam2.lastMasks.width, sam2.lastMasks.height];
  if (sam2.status && sam2.status.width) return [sam2.status.width, sam2.status.height];
  return [video.videoWidth || 640, video.videoHeight || 480];
}

function fitCanvases() {
  for (const c of [overlay, ui]) {
    const w = video.clientWidth, h = video.clientHeight;
    if (c.width !== w || c.height !== h) {
      c.width = w;
      c.height = h;
    }
  }
}

function drawMasks(msg) {
  fitCanvases();
  const W = msg.width, H = msg.height;
  if (maskCanvas.width !== W || maskCanvas.height !== H) {
    maskCanvas.width = W;
    maskCanvas.height = H;
  }
  const img = maskCtx.createImageData(W, H);
  const px = new Uint32Array(img.data.buffer);
  for (const obj of msg.objects) {
    const [r, g, b] = color(obj.id);
    const rgba = ((140 << 24) | (b << 16) | (g << 8) | r) >>> 0; // little-endian RGBA
    let i = 0, on = false;
    for (const n of rleCounts(obj.rle)) {
      if (on) {
        for (let j = i; j < i + n; j++) {
          const x = (j / H) | 0; // column-major
          px[(j - x * H) * W + x] = rgba;
        }
      }
      i += n;
      on = !on;
    }
  }
  maskCtx.putImageData(img, 0, 0);
  const ctx = overlay.getContext("2d");
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(maskCanvas, 0, 0, overlay.width, overlay.height);
  const sx = overlay.width / W, sy = overlay.height / H;
  ctx.font = "12px system-ui, sans-serif";
  ctx.textBaseline = "top";
  msg.objects.forEach((obj, k) => {
    const [r, g, b] = color(obj.id);
    const label = `#${obj.id} ${obj.score == null ? "-" : obj.score.toFixed(2)}`;
    if (obj.bbox) {
      const [x0, y0, x1, y1] = obj.bbox;
      ctx.strokeStyle = `rgb(${r},${g},${b})`;
      ctx.lineWidth = 2;
      ctx.strokeRect(x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy);
    }
    // A legend row per object (top left): id, score, colour; drawn even for an empty mask.
    const y = 4 + 18 * k;
    ctx.fillStyle = "rgba(0,0,0,0.6)";
    ctx.fillRect(4, y, ctx.measureText(label).width + 22, 16);
    ctx.fillStyle = `rgb(${r},${g},${b})`;
    ctx.fillRect(7, y + 3, 10, 10);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, 20, y + 2);
  });
  sam2.drawn++;
}

// ---------------------------------------------------------------- masks over WebSocket

const arrivals = [];
let ws = null;
let pendingMasks = null;

function connectSocket() {
  const url = new URL("ws", window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const token = $("token").value;
  if (token) url.searchParams.set("token", token);
  ws = new WebSocket(url);
  ws.onopen = () => {
    sam2.wsOpen = true;
    ping();
  };
  ws.onclose = () => {
    sam2.wsOpen = false;
    setTimeout(connectSocket, 1000);
  };
  ws.onmessage = (ev) => onSocketMessage(JSON.parse(ev.data));
}

function ping() {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "ping", t: Date.now() }));
}
setInterval(ping, 5000);

function onSocketMessage(msg) {
  if (msg.type === "hello") {
    if (msg.note) log(msg.note);
  } else if (msg.type === "pong") {
    // NTP-style: the node's clock at the midpoint of the round trip.
    const now = Date.now();
    sam2.clockOffsetMs = msg.server_ms - (msg.t + now) / 2;
  } else if (msg.type === "status") {
    sam2.status = msg;
    // Periodic states (running, waiting, ...) and events (connected, rejected, ...).
    $("nodestate").textContent = msg.error ? `${msg.state}: ${msg.error}` : msg.state;
  } else if (msg.type === "masks") {
    sam2.masks++;
    const { objects, ...header } = msg;
    sam2.lastMasks = { ...header, objects: objects.map(({ rle, ...o }) => o) };
    const now = Date.now();
    arrivals.push(now);
    while (arrivals.length && arrivals[0] < now - 3000) arrivals.shift();
    sam2.fps = arrivals.length > 1 ? (1000 * (arrivals.length - 1)) / (now - arrivals[0]) : null;
    sam2.nodeLatencyMs = msg.node_latency_ms;
    if (sam2.clockOffsetMs != null) {
      // node capture -> here, on the node's clock, plus the camera -> node leg (encode
      // time and half the RTT from the sender's stats): an estimate, see the docs.
      sam2.latencyMs = now + sam2.clockOffsetMs - msg.capture_time_ns / 1e6 + senderLegMs;
    }
    $("fps").textContent = sam2.fps == null ? "-" : sam2.fps.toFixed(1);
    $("latency").textContent = sam2.latencyMs == null ? "-" : sam2.latencyMs.toFixed(0);
    $("nodelat").textContent = msg.node_latency_ms.toFixed(0);
    $("objects").textContent = objects.length
      ? objects.map((o) => `#${o.id} ${o.score == null ? "-" : o.score.toFixed(2)}`).join(", ")
      : "none";
    if (pendingMasks === null) requestAnimationFrame(() => {
      const m = pendingMasks;
      pendingMasks = null;
      if (m) drawMasks(m);
    });
    pendingMasks = msg;
  } else if (msg.type === "reply") {
    sam2.replies.push(msg);
    if (!msg.ok) log(`${msg.op}: ${msg.error}`);
    else log("");
  }
}

function send(req) {
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    log("not connected to the node");
    return false;
  }
  ws.send(JSON.stringify(req));
  return true;
}

// ---------------------------------------------------------------- WHIP publishing

let pc = null;
let stream = null;
let senderLegMs = 0;

async function listCameras() {
  const sel = $("camera");
  const keep = sel.value;
  const devices = await navigator.mediaDevices.enumerateDevices();
  sel.replaceChildren(new Option("default", ""));
  devices
    .filter((d) => d.kind === "videoinput")
    .forEach((d, i) => sel.add(new Option(d.label || `camera ${i + 1}`, d.deviceId)));
  sel.value = keep;
}

function iceGatheringDone(peer, timeoutMs) {
  // WHIP without trickle ICE: the offer carries every candidate.
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (peer.iceGatheringState === "complete") resolve();
    };
    peer.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);
  });
}

function authHeaders() {
  const token = $("token").value;
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function publish() {
  await hangup();
  setState("publishing");
  try {
    const cam = $("camera").value;
    stream = await navigator.mediaDevices.getUserMedia({
      video: cam ? { deviceId: { exact: cam } } : true,
      audio: $("audio").checked,
    });
    video.srcObject = stream;
    listCameras().catch(() => {});
    pc = new RTCPeerConnection();
    const peer = pc;
    // getTracks() lists audio first when there is audio: the node takes the video.
    for (const track of stream.getTracks()) {
      peer.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    }
    peer.onconnectionstatechange = () => {
      if (pc === peer) setState(peer.connectionState);
    };
    await peer.setLocalDescription(await peer.createOffer());
    await iceGatheringDone(peer, 3000);
    sam2.offerKinds = [...peer.localDescription.sdp.matchAll(/^m=(\w+)/gm)].map((m) => m[1]);
    const resp = await fetch(cfg.whip_path, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", ...authHeaders() },
      body: peer.localDescription.sdp,
    });
    const body = await resp.text();
    if (resp.status !== 201) throw new Error(`the node refused the offer (HTTP ${resp.status}): ${body.trim()}`);
    sam2.location = new URL(resp.headers.get("Location"), window.location.href).href;
    await peer.setRemoteDescription({ type: "answer", sdp: body });
    sam2.publishes++;
    $("hangup").disabled = false;
    log("");
  } catch (err) {
    log(String(err.message || err));
    await hangup();
    setState("error");
  }
}

async function hangup() {
  const loc = sam2.location;
  if (loc) {
    try {
      await fetch(loc, { method: "DELETE", headers: authHeaders() });
    } catch (err) {
      /* the node may be gone already */
    }
  }
  sam2.location = null; // after the DELETE: tests wait on it
  if (pc) pc.close();
  pc = null;
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  video.srcObject = null;
  $("hangup").disabled = true;
  setState("idle");
}

// The camera -> node leg of glass-to-mask: the encoder's time per frame plus half the
// round trip the receiver's RTCP reports give.
setInterval(async () => {
  if (!pc) return;
  let encode = 0, rtt = 0;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video" && s.framesEncoded) {
      encode = (1000 * s.totalEncodeTime) / s.framesEncoded;
    }
    if (s.type === "remote-inbound-rtp" && s.kind === "video" && s.roundTripTime) {
      rtt = 1000 * s.roundTripTime;
    }
  });
  senderLegMs = encode + rtt / 2;
}, 2000);

// ---------------------------------------------------------------- drawing a box

let drag = null;

function toFrame(x, y) {
  const [W, H] = frameSize();
  return [(x / ui.width) * W, (y / ui.height) * H];
}

ui.addEventListener("pointerdown", (ev) => {
  fitCanvases();
  drag = { x0: ev.offsetX, y0: ev.offsetY, x1: ev.offsetX, y1: ev.offsetY };
  ui.setPointerCapture(ev.pointerId);
});

ui.addEventListener("pointermove", (ev) => {
  if (!drag) return;
  drag.x1 = ev.offsetX;
  drag.y1 = ev.offsetY;
  const ctx = ui.getContext("2d");
  ctx.clearRect(0, 0, ui.width, ui.height);
  ctx.setLineDash([6, 4]);
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 2;
  ctx.strokeRect(drag.x0, drag.y0, drag.x1 - drag.x0, drag.y1 - drag.y0);
});

ui.addEventListener("pointerup", () => {
  if (!drag) return;
  const d = drag;
  drag = null;
  ui.getContext("2d").clearRect(0, 0, ui.width, ui.height);
  if (Math.abs(d.x1 - d.x0) < 4 || Math.abs(d.y1 - d.y0) < 4) return;
  const [a, b] = toFrame(Math.min(d.x0, d.x1), Math.min(d.y0, d.y1));
  const [c, e] = toFrame(Math.max(d.x0, d.x1), Math.max(d.y0, d.y1));
  send({ type: "add_box", box: [a, b, c, e].map((v) => Math.round(v)), ref: Date.now() });
});

$("publish").addEventListener("click", publish);
$("hangup").addEventListener("click", hangup);
$("clear").addEventListener("click", () => send({ type: "reset" }));
window.addEventListener("pagehide", () => {
  if (sam2.location) fetch(sam2.location, { method: "DELETE", headers: authHeaders(), keepalive: true });
});
window.addEventListener("resize", fitCanvases);
video.addEventListener("loadedmetadata", fitCanvases);
if (cfg.token_required) $("token").placeholder = "token (required by this node)";
const fromHash = new URLSearchParams(window.location.hash.slice(1)).get("token");
if (fromHash) $("token").value = fromHash;
connectSocket();
