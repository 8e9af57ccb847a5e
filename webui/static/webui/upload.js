/* The upload page: drop or pick files, check them, send each to POST /transcribe (wait=false)
   with upload progress, then follow its job through GET /job/{id} until it is final. An address
   given "From a URL" goes the same way as url=, the server downloading the file. */
(function () {
  "use strict";
  const { t, humanSize, noteServerDate, timing, csrfToken } = window.STT;
  const form = document.getElementById("upload-form");
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("files");
  const list = document.getElementById("uploads");
  const card = document.getElementById("uploads-card");
  const template = document.getElementById("row-template");
  const pickerErrors = document.getElementById("picker-errors");
  const urlInput = document.getElementById("url");
  const urlButton = document.getElementById("url-send");
  const maxBytes = Number(form.dataset.maxBytes);
  const allowed = form.dataset.extensions.split(",");
  const POLL_MS = 700;
  const pending = [];
  let sending = false;

  function extension(name) {
    const dot = name.lastIndexOf(".");
    return dot > 0 ? name.slice(dot).toLowerCase() : "";
  }

  /* The browser's check, before a byte is sent; the server checks the same rules again. */
  function problem(file) {
    if (!allowed.includes(extension(file.name))) {
      return t("bad_extension", { name: file.name, allowed: allowed.join(", ") });
    }
    if (file.size > maxBytes) {
      return t("too_large", { name: file.name, size: humanSize(file.size), limit: humanSize(maxBytes) });
    }
    if (file.size === 0) return t("empty", { name: file.name });
    return null;
  }

  /* The options as the API reads them: checkboxes say true or false, empty fields are left out. */
  function options() {
    const data = new FormData();
    for (const el of form.elements) {
      if (!el.name || el.name === "csrfmiddlewaretoken" || el.name === "url" || el.type === "file") continue;
      if (el.type === "checkbox") data.append(el.name, el.checked ? "true" : "false");
      else if (el.value.trim() !== "") data.append(el.name, el.value.trim());
    }
    data.append("wait", "false");
    return data;
  }

  function optionsValid() {
    const invalid = form.querySelector(":invalid");
    if (!invalid) return true;
    const details = invalid.closest("details");
    if (details) details.open = true;
    invalid.reportValidity();
    invalid.focus();
    return false;
  }

  /* A refusal that names options (a 422 from the API) is shown at each of those fields as well, as
     the server-rendered forms show theirs; cleared when files are added again. */
  function showFieldErrors(body) {
    const problems = Array.isArray(body.errors) && body.errors.length ? body.errors
      : body.field ? [{ field: body.field, message: body.detail }] : [];
    for (const { field, message } of problems) {
      const el = form.elements.namedItem(field);
      const box = el && el.closest ? el.closest(".form-field, .form-check") : null;
      if (!box) continue;
      let list = box.querySelector(".errorlist.from-server");
      if (!list) {
        list = document.createElement("ul");
        list.className = "errorlist from-server";
        list.id = el.id + "_server_error";
        box.appendChild(list);
        el.setAttribute("aria-describedby", ((el.getAttribute("aria-describedby") || "") + " " + list.id).trim());
      }
      if ([...list.children].some((li) => li.textContent === message)) continue;
      const item = document.createElement("li");
      item.textContent = message;
      list.appendChild(item);
      el.setAttribute("aria-invalid", "true");
      const details = box.closest("details");
      if (details) details.open = true;
    }
  }

  function clearFieldErrors() {
    for (const list of form.querySelectorAll(".errorlist.from-server")) {
      const el = document.getElementById(list.id.replace(/_server_error$/, ""));
      if (el) {
        el.removeAttribute("aria-invalid");
        const rest = (el.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && id !== list.id);
        if (rest.length) el.setAttribute("aria-describedby", rest.join(" "));
        else el.removeAttribute("aria-describedby");
      }
      list.remove();
    }
  }

  /* One file's row, or one address's (a file the server fetches): `source` is a File or a URL. */
  class Row {
    constructor(source) {
      this.file = typeof source === "string" ? null : source;
      this.url = this.file ? null : source;
      this.name = this.file ? this.file.name : this.url;
      this.li = template.content.firstElementChild.cloneNode(true);
      this.q = (sel) => this.li.querySelector(sel);
      this.q(".name").textContent = this.name;
      this.bar = this.q(".progress-bar");
      this.progress = this.q(".progress");
      this.progress.setAttribute("aria-label", this.name);
      this.q(".open").textContent = t("open");
      this.cancelButton = this.q(".cancel");
      this.cancelButton.textContent = t("cancel");
      this.cancelButton.addEventListener("click", () => this.cancel());
      card.hidden = false;
      list.appendChild(this.li);
    }

    status(key) {
      if (this.li.dataset.status !== key && key !== "waiting") {
        // Screen readers hear each change of state, not every percent.
        document.getElementById("announcer").textContent = this.name + ": " + t(key);
      }
      this.li.dataset.status = key;
      const badge = this.q(".status");
      badge.textContent = t(key);
      const colours = { done: "success", failed: "danger", rejected: "danger", cancelled: "warning",
                        running: "info", uploading: "info", fetching: "info" };
      badge.className = "badge status " + (colours[key] || "secondary");
    }

    bar_(percent, kind) {
      const value = Math.max(0, Math.min(100, percent));
      this.bar.style.width = value + "%";
      this.bar.className = "progress-bar " + kind;
      this.progress.setAttribute("aria-valuenow", String(Math.round(value * 10) / 10));
      this.progress.dataset.phase = kind;
    }

    detail(text) { this.q(".detail").textContent = text; }
    error(text) { this.q(".error").textContent = text; }

    reject(message) {
      this.status("rejected");
      this.progress.hidden = true;
      if (this.url) this.detail("");  // no longer "downloading"
      this.error(message);
    }

    send(data) {
      const xhr = (this.xhr = new XMLHttpRequest());
      xhr.open("POST", form.dataset.api);
      xhr.setRequestHeader("X-CSRFToken", csrfToken());
      xhr.setRequestHeader("Accept", "application/json");
      if (this.url) {
        // The server downloads it before answering; leaving would not stop that, so no Cancel
        // until there is a job to cancel.
        this.status("fetching");
        this.detail(t("fetching_detail"));
        data.append("url", this.url);
      } else {
        this.status("uploading");
        this.cancelButton.hidden = false;
        data.append("file", this.file, this.file.name);
      }
      if (this.file) xhr.upload.addEventListener("progress", (e) => {
        const total = e.lengthComputable ? e.total : this.file.size;
        this.bar_((100 * e.loaded) / total, "upload");
        this.detail(t("uploading") + " " + Math.floor((100 * e.loaded) / total) + " % · " +
                    t("of", { done: humanSize(e.loaded), total: humanSize(total) }));
      });
      return new Promise((resolve) => {
        xhr.addEventListener("load", () => { this.received(xhr); resolve(); });
        xhr.addEventListener("error", () => {
          this.reject(t(this.url ? "network_error_url" : "network_error"));
          this.cancelButton.hidden = true;
          resolve();
        });
        xhr.addEventListener("abort", () => { this.status("cancelled"); this.bar_(0, "failed"); resolve(); });
        xhr.send(data);
      });
    }

    received(xhr) {
      this.xhr = null;
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON: say the status */ }
      if ((xhr.status === 202 || xhr.status === 200) && body.job_id) {
        this.jobId = body.job_id;
        this.li.dataset.jobId = body.job_id;
        const open = this.q(".open");
        open.href = form.dataset.jobPage + body.job_id + "/";
        open.hidden = false;
        this.status("queued");
        this.bar_(0, "");
        this.detail(this.file ? t("uploaded") + " " + humanSize(this.file.size) : t("fetched"));
        if (this.url && urlInput.value.trim() === this.url) urlInput.value = "";
        this.poll();
        return;
      }
      this.cancelButton.hidden = true;
      if (xhr.status === 422) showFieldErrors(body);
      this.reject(body.detail ? String(body.detail) : t("server_error", { status: xhr.status }));
    }

    async poll() {
      let job;
      try {
        const response = await fetch(form.dataset.jobApi + this.jobId, { headers: { Accept: "application/json" } });
        noteServerDate(response);
        if (!response.ok) throw new Error(String(response.status));
        job = await response.json();
      } catch (e) {
        setTimeout(() => this.poll(), POLL_MS * 3);  // the server restarting: keep trying, slower
        return;
      }
      this.show(job);
      if (!["done", "failed", "cancelled"].includes(job.status)) setTimeout(() => this.poll(), POLL_MS);
    }

    show(job) {
      this.status(job.status);
      const kind = job.status === "done" ? "done" : job.status === "failed" ? "failed" : "";
      this.bar_(job.status === "done" ? 100 : job.progress, kind);
      const parts = [Math.round(job.progress) + " %", ...timing(job)];
      this.detail(parts.join(" · "));
      this.cancelButton.hidden = ["done", "failed", "cancelled"].includes(job.status);
      if (job.status === "failed") this.error(job.error || "");
      if (job.status === "done" && job.result) {
        const text = job.result.text || "";
        this.q(".preview").textContent = text.length > 240 ? text.slice(0, 240) + "…" : text;
      }
    }

    async cancel() {
      if (this.xhr) { this.xhr.abort(); return; }
      if (!this.jobId) return;
      this.cancelButton.disabled = true;
      const response = await fetch(form.dataset.jobApi + this.jobId + "/cancel", {
        method: "POST", headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        this.error(body.detail || t("server_error", { status: response.status }));
      }
      this.cancelButton.disabled = false;
    }
  }

  async function pump() {
    if (sending) return;
    sending = true;
    while (pending.length) {
      const { row, data } = pending.shift();
      await row.send(data);
    }
    sending = false;
  }

  function add(files) {
    pickerErrors.textContent = "";
    clearFieldErrors();
    if (!files.length) return;
    if (!optionsValid()) return;
    if (!form.elements.model.value) { pickerErrors.textContent = t("no_model"); return; }
    for (const file of files) {
      const row = new Row(file);
      const why = problem(file);
      if (why) { row.reject(why); continue; }
      row.status("waiting");
      pending.push({ row, data: options() });
    }
    pump();
  }

  /* "From a URL": the address with the options, as a file would go; the server checks it. */
  function addUrl() {
    pickerErrors.textContent = "";
    clearFieldErrors();
    const url = urlInput.value.trim();
    if (!/^https?:\/\/\S+$/i.test(url)) {
      showFieldErrors({ field: "url", detail: t("bad_url") });
      urlInput.focus();
      return;
    }
    if (!optionsValid()) return;
    if (!form.elements.model.value) { pickerErrors.textContent = t("no_model"); return; }
    const row = new Row(url);
    row.status("waiting");
    pending.push({ row, data: options() });
    pump();
  }

  // Leaving the page would abort the uploads still being sent (jobs already sent carry on).
  window.addEventListener("beforeunload", (e) => {
    if (sending) { e.preventDefault(); e.returnValue = ""; }
  });

  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
  });
  input.addEventListener("change", () => { add([...input.files]); input.value = ""; });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("dragover"); });
  }
  for (const type of ["dragleave", "dragend"]) {
    zone.addEventListener(type, () => zone.classList.remove("dragover"));
  }
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragover");
    add([...(e.dataTransfer ? e.dataTransfer.files : [])]);
  });
  // A file dropped beside the zone must not make the browser navigate away from the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  // The page sends everything itself; without this script the URL button posts the form to the
  // server's own page (webui:from_url). Enter in an option's field also "clicks" that button (the
  // form's default one): it sends nothing.
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const from = document.activeElement;
    const inOption = from && from !== urlInput && form.contains(from) && from.matches("input, select, textarea");
    if (!inOption && (e.submitter === urlButton || from === urlInput)) addUrl();
  });
})();
