/* The live page: the microphone through an AudioWorklet (16-kHz mono PCM) to the /v1/live
   WebSocket; final words in black, the tentative tail in grey; a level meter; Stop ends the
   session, which becomes a job. Every message received is also kept in window.liveLog (with the
   time it came, in ms since the socket was opened), and window.liveFirstAudio says when the first
   100 ms of audio left: bench/live.py measures latency from them. */
(function () {
  "use strict";
  const { t, clock } = window.STT;
  const form = document.getElementById("live-form");
  const start = document.getElementById("live-start");
  const stop = document.getElementById("live-stop");
  const status = document.getElementById("live-status");
  const level = document.getElementById("live-level");
  const finalText = document.getElementById("live-final");
  const partialText = document.getElementById("live-partial");
  const jobBox = document.getElementById("live-job");
  const jobLink = document.getElementById("live-job-link");
  const workletUrl = document.getElementById("live-script").dataset.worklet;
  window.liveLog = [];
  window.levels = [];  // the meter's readings (RMS), for the tests
  window.liveClock = () => performance.now() - began;  // the clock liveLog's times are on

  let socket = null, context = null, stream = null, began = 0, ended = false, listening = null, sessionId = null;

  // Speaking now, in the browser's language more likely than in the server's default: choose it
  // when the list has it and the server left its default there.
  const language = form.elements.language;
  const spoken = (navigator.language || "").split("-")[0].toLowerCase();
  if (language && spoken && language.value === language.dataset.default &&
      [...language.options].some((o) => o.value === spoken)) {
    language.value = spoken;
  }

  // How a session ended, in the page's language (the server's reason is English); the server's
  // own words where only they say it (bad settings).
  function endedText(message) {
    const key = "live_end_" + message.code;
    const own = t(key);
    const text = own === key ? message.reason : own;
    return message.job_id ? text + " " + t("live_kept") : text;
  }

  function showJob(url) {
    jobLink.href = url;
    jobBox.hidden = false;
  }

  // The socket closed without `ended` (the server restarting, a lost connection): the session
  // still ends on the server and its recording becomes a job: ask for it.
  async function findJob(tries) {
    if (!sessionId || tries <= 0) return;
    try {
      const response = await fetch("/live/" + sessionId, { headers: { Accept: "application/json" } });
      const session = response.ok ? await response.json() : null;
      if (session && session.job_id) {
        say(t("live_closed_kept"));
        showJob("/jobs/" + session.job_id + "/");
        return;
      }
    } catch (e) { /* the server is away: try again */ }
    setTimeout(() => findJob(tries - 1), 2000);
  }

  const say = (text) => { status.textContent = text; };

  function settings() {
    const params = new URLSearchParams();
    for (const field of form.elements) {
      if (field.name && field.value) params.set(field.name, field.value);
    }
    return params;
  }

  async function openMicrophone() {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
    });
    try {
      context = new AudioContext({ sampleRate: 16000 });
    } catch (e) {
      context = new AudioContext();  // the worklet resamples
    }
    await context.audioWorklet.addModule(workletUrl);
    const source = context.createMediaStreamSource(stream);
    const sender = new AudioWorkletNode(context, "pcm-sender");
    sender.port.onmessage = (e) => {
      level.style.width = Math.min(100, Math.round(e.data.level * 400)) + "%";
      if (window.levels.length < 10000) window.levels.push(e.data.level);
      if (socket && socket.readyState === WebSocket.OPEN && !ended) {
        // when the first 100 ms of audio left: the session's time 0 is 100 ms before it
        if (window.liveFirstAudio === null) window.liveFirstAudio = performance.now() - began;
        socket.send(e.data.pcm);
      }
    };
    source.connect(sender);
  }

  function closeMicrophone() {
    if (stream) stream.getTracks().forEach((track) => track.stop());
    if (context) context.close().catch(() => {});
    stream = null;
    context = null;
    level.style.width = "0";
  }

  function show(message) {
    window.liveLog.push({ at: performance.now() - began, message });
    switch (message.type) {
      case "session.started":
        sessionId = message.session_id;
        say(t("live_waiting"));
        break;
      case "session.ready": {  // "Listening: speak now. · 0:12", the time recorded so far
        const tick = () => say(t("live_listening") + " · " + clock((performance.now() - began) / 1000));
        tick();
        listening = setInterval(tick, 500);
        break;
      }
      case "final":
        finalText.append((finalText.textContent ? " " : "") + message.text);
        break;
      case "partial":
        partialText.textContent = message.text ? " " + message.text : "";
        break;
      case "error":
        clearInterval(listening);
        say(message.message);
        break;
      case "ended":
        ended = true;
        clearInterval(listening);
        partialText.textContent = "";
        say(endedText(message));
        if (message.page_url) showJob(message.page_url);
        break;
      default:
        break;
    }
  }

  start.addEventListener("click", async () => {
    start.disabled = true;
    for (const field of form.elements) field.disabled = true;  // the session's settings are fixed
    ended = false;
    sessionId = null;
    finalText.textContent = "";
    partialText.textContent = "";
    jobBox.hidden = true;
    window.liveLog = [];
    window.liveFirstAudio = null;
    if (!navigator.mediaDevices || !window.isSecureContext) {
      say(t("live_insecure"));  // browsers give the microphone only to https:// and localhost pages
      start.disabled = false;
      for (const field of form.elements) field.disabled = false;
      return;
    }
    say(t("live_microphone"));
    try {
      await openMicrophone();
    } catch (e) {
      say(t("live_no_microphone", { error: e.message || String(e) }));
      closeMicrophone();
      start.disabled = false;
      for (const field of form.elements) field.disabled = false;
      return;
    }
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + form.dataset.socket + "?" + settings());
    socket.binaryType = "arraybuffer";
    began = performance.now();
    socket.onmessage = (e) => show(JSON.parse(e.data));
    socket.onopen = () => { stop.disabled = false; };
    socket.onclose = (e) => {
      clearInterval(listening);
      closeMicrophone();
      stop.disabled = true;
      start.disabled = false;
      for (const field of form.elements) field.disabled = false;
      if (!ended) {
        say(t("live_closed", { code: e.code, reason: e.reason || "" }));
        findJob(30);
      }
    };
  });

  stop.addEventListener("click", () => {
    stop.disabled = true;
    clearInterval(listening);
    closeMicrophone();  // nothing more is recorded; the server confirms the rest
    say(t("live_ending"));
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "stop" }));
  });
})();
