/* The job page: live progress while the job runs, then the transcript viewer (segments and words
   that follow the player and seek it when clicked) and copying the text. */
(function () {
  "use strict";
  const { t, noteServerDate, timing } = window.STT;

  /* --- live progress of a queued or running job: its server-sent events (GET /job/{id}/events):
     progress, each segment as the worker decodes it, then the final state ------------------- */
  const live = document.getElementById("live");
  if (live) {
    const bar = live.querySelector(".progress-bar");
    const progress = live.querySelector(".progress");
    const detail = document.getElementById("live-detail");
    const badge = document.getElementById("job-status");
    const text = document.getElementById("live-text");
    const show = (job) => {
      bar.style.width = job.progress + "%";
      progress.setAttribute("aria-valuenow", String(job.progress));
      badge.textContent = t(job.status);
      badge.dataset.status = job.status;
      badge.className = "badge " + (job.status === "running" ? "info" : "secondary");
      detail.textContent = [Math.round(job.progress) + " %", ...timing(job)].join(" · ");
    };
    // The server's clock, for the elapsed time (the browser's may differ), then a tick a second.
    fetch(live.dataset.jobApi, { headers: { Accept: "application/json" } }).then(noteServerDate, () => {});
    let last = null;
    const ticking = setInterval(() => { if (last) show(last); }, 1000);
    const events = new EventSource(live.dataset.jobApi + "/events");
    // Segments come as the worker decodes them: several stretches of a long file at once, so not
    // in time order. Kept sorted by time; a reconnection tells them again (same n).
    const told = new Map();
    events.addEventListener("progress", (e) => { last = JSON.parse(e.data); show(last); });
    events.addEventListener("segment", (e) => {
      const segment = JSON.parse(e.data);
      if (told.has(segment.n)) return;
      told.set(segment.n, segment);
      const sorted = [...told.values()].sort((a, b) => a.start - b.start || a.end - b.end);
      text.hidden = false;
      text.textContent = sorted.map((s) => s.text).join(" ");
      const waiting = document.getElementById("no-transcript");  // "appears when the job is done"
      if (waiting) waiting.textContent = t("text_so_far");
    });
    // A form being sent (Cancel) leads to its own page, with its message: a reload now would cut
    // that answer off (and its message with it).
    let leaving = false;
    document.addEventListener("submit", () => { leaving = true; });
    for (const end of ["done", "failed", "cancelled", "deleted"]) {
      events.addEventListener(end, () => {
        events.close();
        clearInterval(ticking);
        if (!leaving) window.location.reload();  // the server renders the result, the error or the retry box
      });
    }
    // A lost connection (the server restarting): EventSource tries again by itself.
  }

  /* --- transcript viewer ------------------------------------------------------------------- */
  const player = document.getElementById("player");
  const list = document.getElementById("segments");
  if (player) {
    player.addEventListener("error", () => {
      const note = document.getElementById("player-error");
      note.textContent = t("cannot_play");
      note.hidden = false;
    });
  }
  if (player && list) {
    const segments = [...list.querySelectorAll(".segment")];
    const words = [...list.querySelectorAll(".word")];
    const span = (el) => [parseFloat(el.dataset.start), parseFloat(el.dataset.end)];
    const segTimes = segments.map(span);
    const wordTimes = words.map(span);
    const follow = document.getElementById("follow");
    let activeSeg = null;
    let activeWord = null;

    // The last item that starts at or before t (times are sorted), if t is before its end.
    function find(times, time) {
      let lo = 0, hi = times.length - 1, found = -1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (times[mid][0] <= time + 1e-3) { found = mid; lo = mid + 1; } else { hi = mid - 1; }
      }
      return found >= 0 && time < times[found][1] ? found : -1;
    }

    function mark(current, next, cls) {
      if (current === next) return current;
      if (current) { current.classList.remove(cls); current.removeAttribute("aria-current"); }
      if (next) { next.classList.add(cls); next.setAttribute("aria-current", "true"); }
      return next;
    }

    function highlight() {
      const time = player.currentTime;
      const seg = segments[find(segTimes, time)] || null;
      const changed = seg !== activeSeg;
      activeSeg = mark(activeSeg, seg, "active");
      activeWord = mark(activeWord, words[find(wordTimes, time)] || null, "active");
      if (changed && seg && follow && follow.checked) {
        const top = seg.offsetTop - list.offsetTop;
        if (top < list.scrollTop || top > list.scrollTop + list.clientHeight - seg.offsetHeight) {
          list.scrollTo({ top: Math.max(0, top - list.clientHeight / 3), behavior: "smooth" });
        }
      }
    }

    function seek(time) {
      player.currentTime = time;
      highlight();
      player.play().catch(() => { /* no audio output or not allowed: the seek still happened */ });
    }

    list.addEventListener("click", (e) => {
      const word = e.target.closest(".word");
      const seg = e.target.closest(".segment");
      if (word) seek(parseFloat(word.dataset.start));
      else if (seg) seek(parseFloat(seg.dataset.start));
    });

    // timeupdate fires about four times a second: too coarse for words, so follow frames while playing.
    let frame = 0;
    const tick = () => { highlight(); frame = player.paused ? 0 : requestAnimationFrame(tick); };
    player.addEventListener("play", () => { if (!frame) frame = requestAnimationFrame(tick); });
    for (const type of ["timeupdate", "seeked", "pause", "ended"]) player.addEventListener(type, highlight);
  }

  /* --- speaker names: one line each, so Enter saves them (the boxes wrap long names) ------- */
  const rename = document.getElementById("rename-form");
  if (rename) {
    rename.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && e.target.tagName === "TEXTAREA" && !e.isComposing) {
        e.preventDefault();
        rename.requestSubmit();
      }
    });
  }

  /* --- copy the text ----------------------------------------------------------------------- */
  const copy = document.getElementById("copy-text");
  if (copy) {
    const status = document.getElementById("copy-status");
    const text = document.getElementById("full-text");
    copy.addEventListener("click", async () => {
      try {
        if (!navigator.clipboard) throw new Error("no clipboard API (not a secure context)");
        await navigator.clipboard.writeText(text.textContent);
      } catch (e) {
        // Plain http on a LAN address has no clipboard API: fall back to a selection and execCommand.
        const range = document.createRange();
        range.selectNodeContents(text);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        if (!document.execCommand("copy")) { status.textContent = t("copy_failed"); return; }
      }
      status.textContent = t("copied");
    });
  }
})();
