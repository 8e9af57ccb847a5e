/* Helpers shared by the page scripts: translated messages, sizes, clocks, server time. */
(function () {
  "use strict";
  const node = document.getElementById("i18n");
  const strings = node ? JSON.parse(node.textContent) : {};

  function t(key, vars) {
    const text = strings[key] || key;
    return vars ? text.replace(/%\((\w+)\)s/g, (m, name) => (name in vars ? vars[name] : m)) : text;
  }

  // 1153434 → "1.1 MB" ("1,1 МБ" on a Russian page), as the server's filesize filter writes it.
  function humanSize(n) {
    const units = ["size_bytes", "size_kb", "size_mb", "size_gb"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    const lang = document.documentElement.lang || undefined;
    const value = i === 0 ? String(n) : n.toLocaleString(lang, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
    return t(units[i], { value });
  }

  function clock(seconds) {
    const total = Math.max(0, Math.round(seconds));
    const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    const pad = (x) => String(x).padStart(2, "0");
    return h ? h + ":" + pad(m) + ":" + pad(s) : m + ":" + pad(s);
  }

  // The browser's clock may differ from the server's: measure the difference from Date headers,
  // so elapsed times computed from the job's timestamps are right.
  let skew = 0;
  function noteServerDate(response) {
    const date = Date.parse(response.headers.get("Date") || "");
    if (!Number.isNaN(date)) skew = Date.now() - date;
  }
  function serverNow() { return Date.now() - skew; }

  /* Elapsed and remaining time of a job as the API reports it (progress is the fraction decoded). */
  function timing(job) {
    const parts = [];
    const started = job.started_at ? Date.parse(job.started_at) : null;
    const finished = job.finished_at ? Date.parse(job.finished_at) : null;
    if (!started) return parts;
    const elapsed = ((finished || serverNow()) - started) / 1000;
    parts.push(t("elapsed", { time: clock(elapsed) }));
    // The worker's own estimate, from the speed it has measured since decoding began (or, before
    // the first window, from recent jobs of the model): not elapsed time, which counts loading.
    if (job.status === "running" && job.eta_seconds !== null && job.eta_seconds !== undefined) {
      parts.push(t("eta", { time: clock(job.eta_seconds) }));
    }
    return parts;
  }

  function csrfToken() {
    const field = document.querySelector("[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  window.STT = { t, humanSize, clock, noteServerDate, timing, csrfToken };
})();
