// The admin's Models page: the folder field only where the source is a server folder, and, while
// a model task is queued or running, a reload every 3 s to show its progress (not while someone is
// choosing or typing: that would throw their input away).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form.install-form")) {
    const source = form.querySelector("select[name=source]");
    const path = form.querySelector("input[name=path]");
    const show = () => { path.hidden = source.value !== "folder"; };
    source.addEventListener("change", show);
    show();
  }
  const main = document.getElementById("content-main");
  if (!main || main.dataset.busy !== "true") return;
  const editing = () => {
    const active = document.activeElement;
    if (active && active.closest("form")) return true;
    return [...document.querySelectorAll("input[name=path]")].some((input) => input.value.trim() !== "");
  };
  const tick = () => { if (editing()) setTimeout(tick, 3000); else location.reload(); };
  setTimeout(tick, 3000);
});
