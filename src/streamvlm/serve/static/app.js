// streamvlm live: a webcam or a local video file streamed to /v1/stream (docs/serve.md).
"use strict";
const $ = (id) => document.getElementById(id);
const video = $("video"), canvas = $("canvas"), caption = $("caption"), transcript = $("transcript");
let ws = null, session = null, timer = null, started = 0, lastTime = 0, mode = null, wanted = false;
let delta = "", captionTimer = null, fileUrl = null;
// A stream outlives its connection: when it is lost (its server died or stops: docs/serve.md,
// Scale-out) a new session goes on from the next frame, on the same clock (started, lastTime), the
// transcript kept, the instruction and the unanswered questions asked again.
let lostCode = null, pending = [];

$("key").value = localStorage.getItem("streamvlm-key") || "";
$("key").addEventListener("change", () => localStorage.setItem("streamvlm-key", $("key").value));

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function streamTime() {
  const t = mode === "file" ? video.currentTime : (performance.now() - started) / 1000;
  lastTime = Math.max(lastTime, t);
  return lastTime;
}

function showCaption(text) {
  caption.textContent = text;
  clearTimeout(captionTimer);
  captionTimer = setTimeout(() => { caption.textContent = ""; }, 5000);
}

function addLine(role, time, text) {
  const li = document.createElement("li");
  li.className = role;
  const stamp = document.createElement("span");
  stamp.className = "time";
  stamp.textContent = `(${time.toFixed(1)}s)`;
  li.append(stamp, role === "note" ? text : `${role === "user" ? "You" : "Assistant"}: ${text}`);
  transcript.append(li);
  li.scrollIntoView({ block: "nearest" });
}

function speak(text) {
  if ($("speak").checked && "speechSynthesis" in window) {
    speechSynthesis.speak(new SpeechSynthesisUtterance(text));
  }
}

function onMessage(event) {
  const m = JSON.parse(event.data);
  if (m.type === "session") {
    session = m;
    const threshold = Number($("threshold").value);
    $("threshold-value").textContent = threshold.toFixed(3);
    status(`Streaming at ${m.fps} frames/s.`);
    if (lostCode !== null) {
      addLine("note", lastTime, `Connection lost (code ${lostCode}); a new session goes on from here.`);
      if (threshold !== m.threshold) ws.send(JSON.stringify({ type: "config", threshold }));
    } else {
      $("threshold").value = m.threshold;
      $("threshold-value").textContent = Number(m.threshold).toFixed(3);
    }
    $("note").textContent = m.note || "";
    $("note").hidden = !m.note;
    const instruction = $("instruction").value.trim();
    if (instruction) ws.send(JSON.stringify({ type: "query", time: lastTime, text: instruction }));
    for (const q of pending) {
      ws.send(JSON.stringify({ type: "query", time: Math.max(q.time, lastTime), text: q.text }));
    }
    lostCode = null;
    startCapture();
  } else if (m.type === "assistant_delta") {
    delta += m.delta;
    showCaption(delta);
  } else if (m.type === "assistant") {
    delta = "";
    showCaption(m.text);
    addLine("assistant", m.time, m.text);
    speak(m.text);
  } else if (m.type === "user") {
    const asked = pending.findIndex((q) => q.text === m.text);
    if (asked >= 0) pending.splice(asked, 1);
    addLine("user", m.time, m.text);
  } else if (m.type === "stats") {
    $("stats").textContent = `frames/s ${m.fps.toFixed(1)} | latency ${m.latency_ms.toFixed(0)} ms | ` +
      `dropped ${m.frames_dropped} | queue ${m.queue} | KV ${m.kv_tokens} tokens`;
  } else if (m.type === "error") {
    if (m.code === "server_full") status("The server is full; try again in a moment.", true);
    else if (m.code === "unauthorized") status("Wrong or missing API key.", true);
    else status(`Server: ${m.message}`, true);
  }
}

function connect() {
  const key = $("key").value;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/stream` +
    (key ? `?key=${encodeURIComponent(key)}` : "");
  ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onmessage = onMessage;
  ws.onclose = (event) => {
    stopCapture();
    ws = null;
    setControls(false);
    if (event.code === 1013) status("The server is full; try again in a moment.", true);
    else if (event.code === 4401) status("Wrong or missing API key.", true);
    else if (event.code === 1000 && !wanted) status("Stream ended.");
    else if (wanted) {
      lostCode = event.code;
      status(`Disconnected (code ${event.code}); reconnecting...`, true);
      $("reconnect").hidden = false;
      setTimeout(() => { if (wanted && !ws) connect(); }, 1000 + 500 * Math.random());
    }
  };
  ws.onerror = () => status("Cannot reach the server.", true);
  setControls(true);
}

function setControls(on) {
  $("question").disabled = $("send").disabled = !on;
  $("stop").disabled = !on;
  $("reconnect").hidden = on || !wanted;
}

function startCapture() {
  clearInterval(timer);
  timer = setInterval(sendFrame, 1000 / session.fps);
}

function stopCapture() {
  clearInterval(timer);
  timer = null;
}

function sendFrame() {
  if (!ws || ws.readyState !== WebSocket.OPEN || !video.videoWidth) return;
  if (mode === "file" && video.ended) { wanted = false; ws.send(JSON.stringify({ type: "end" })); stopCapture(); return; }
  if (ws.bufferedAmount > 2 * 1024 * 1024) return;  // the network is behind: skip this frame
  const side = session.frame_side || 768;
  const scale = Math.min(1, side / Math.max(video.videoWidth, video.videoHeight));
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  const time = streamTime();
  canvas.toBlob(async (blob) => {
    if (!blob || !ws || ws.readyState !== WebSocket.OPEN) return;
    const image = new Uint8Array(await blob.arrayBuffer());
    const message = new Uint8Array(8 + image.length);
    new DataView(message.buffer).setFloat64(0, time, false);
    message.set(image, 8);
    ws.send(message);
  }, "image/jpeg", 0.85);
}

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    status("No camera API here (the page needs https or localhost).", true);
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    video.srcObject = stream;
    await video.play();
  } catch (err) {
    if (err.name === "NotAllowedError") status("Camera permission denied.", true);
    else if (err.name === "NotFoundError" || err.name === "OverconstrainedError") status("No camera found.", true);
    else status(`Cannot start the camera: ${err.message}`, true);
    return;
  }
  mode = "camera";
  begin();
}

async function openFile(file) {
  if (fileUrl) URL.revokeObjectURL(fileUrl);
  fileUrl = URL.createObjectURL(file);
  video.srcObject = null;
  video.src = fileUrl;
  try { await video.play(); } catch (err) { status(`Cannot play this file: ${err.message}`, true); return; }
  mode = "file";
  begin();
}

function begin() {
  wanted = true;
  transcript.textContent = "";
  started = performance.now();
  lastTime = 0;
  lostCode = null;
  pending = [];
  if (ws) ws.close(1000);
  status("Connecting...");
  connect();
}

function stop() {
  wanted = false;
  stopCapture();
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "end" }));
  if (video.srcObject) video.srcObject.getTracks().forEach((t) => t.stop());
  video.pause();
}

$("camera").addEventListener("click", startCamera);
$("file").addEventListener("change", (e) => { if (e.target.files[0]) openFile(e.target.files[0]); });
$("stop").addEventListener("click", stop);
$("reconnect").addEventListener("click", () => { wanted = true; if (!ws) connect(); });
$("ask").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("question").value.trim();
  if (!text || !ws || ws.readyState !== WebSocket.OPEN) return;
  const time = streamTime();
  pending.push({ time, text });
  ws.send(JSON.stringify({ type: "query", time, text }));
  $("question").value = "";
});
$("threshold").addEventListener("input", () => {
  const value = Number($("threshold").value);
  $("threshold-value").textContent = value.toFixed(3);
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "config", threshold: value }));
});
