// Times: shown in the reader's own time zone, with "x minutes ago" beside them.
(function () {
  "use strict";
  const units = [["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];
  const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  function ago(date) {
    const seconds = Math.round((date.getTime() - Date.now()) / 1000);
    for (const [unit, size] of units) {
      if (Math.abs(seconds) >= size || unit === "second") {
        return relative.format(Math.round(seconds / size), unit);
      }
    }
    return "";
  }
  function localise(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      const date = new Date(el.getAttribute("datetime"));
      if (isNaN(date)) return;
      if (!el.dataset.absolute) {
        el.dataset.absolute = date.toLocaleString();
        el.title = el.dataset.absolute;
      }
      if (el.closest("ol.log")) { el.textContent = date.toLocaleTimeString(); return; }
      el.textContent = el.dataset.format === "relative" ? ago(date) : el.dataset.absolute + " (" + ago(date) + ")";
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localise(document); });
  document.addEventListener("htmx:afterSettle", function (event) { localise(event.target); });
})();
