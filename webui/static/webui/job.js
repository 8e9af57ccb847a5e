/* The job page: live progress while the job runs, then the transcript viewer (segments and words
   that follow the player and seek it when clicked) and copying the text. */
(function () {
  "use strict";
  const { t, noteServerDate, timing } = window.STT;

  /* --- live progress of a queued or running job -------------------------------------------- */
  const live = document.getElementById("live");
  if (live) {
    const bar = live.querySelector(".progress-bar");
    const progress = live.querySelector(".progress");
    const detail = document.getElementById("live-detail");
    const badge = document.getElementById("job-status");
    const poll = async () => {
      let job;
      try {
        const response = await fetch(live.dataset.jobApi, { headers: { Accept: "application/json" } });
        noteServerDate(response);
        if (!response.ok) throw new Error(String(response.status));
        job = await response.json();
      } catch (e) {
        setTimeout(poll, 2000);
        return;
      }
      if (["done", "failed", "cancelled"].includes(job.status)) {
        window.location.reload();  // the server renders the result, the error or the retry box
        return;
      }
      bar.style.width = job.progress + "%";
      progress.setAttribute("aria-valuenow", String(job.progress));
      badge.textContent = t(job.status);
      badge.dataset.status = job.status;
      badge.className = "badge " + (job.status === "running" ? "info" : "secondary");
      detail.textContent = [Math.round(job.progress) + " %", ...timing(job)].join(" · ");
      setTimeout(poll, 700);
    };
    poll();
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
