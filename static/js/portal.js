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

// Polling pauses while the reader is typing: an element with data-pause-while-focused="INPUT" (or "TEXTAREA",
// or both, comma-separated) skips its refresh while such a field has the focus, so the swap never eats what
// is being typed. (Instead of an hx-trigger filter: the Content-Security-Policy allows htmx no eval.)
document.addEventListener("htmx:beforeRequest", function (event) {
  "use strict";
  const elt = event.detail.elt;
  const paused = elt && elt.dataset ? elt.dataset.pauseWhileFocused : "";
  const focused = document.activeElement;
  if (paused && focused && paused.split(",").map(function (t) { return t.trim(); }).includes(focused.tagName)) {
    event.preventDefault();
  }
});

// A form with data-kind-select="<id of a select>" shows only its fields whose data-kinds lists the chosen
// value (the check form: each kind of check has its own settings).
(function () {
  "use strict";
  function kindFields(root) {
    root.querySelectorAll("form[data-kind-select]").forEach(function (form) {
      const select = document.getElementById(form.dataset.kindSelect);
      if (!select || form.dataset.kindBound) return;
      form.dataset.kindBound = "yes";
      function sync() {
        form.querySelectorAll(".kind-field").forEach(function (el) {
          el.hidden = !el.dataset.kinds.split(" ").includes(select.value);
        });
      }
      select.addEventListener("change", sync);
      sync();
    });
  }
  document.addEventListener("DOMContentLoaded", function () { kindFields(document); });
  document.addEventListener("htmx:afterSettle", function (event) { kindFields(event.target); });
})();
