// Forms where one choice decides which settings apply: show only the sections of the chosen option.
//   <fieldset data-shown-for="restart_controller" data-values="webhook ecs">  shown when restart_controller is
//   webhook or ecs. Without JavaScript every section stays visible (each says what it is for).
(function () {
  "use strict";
  function chosen(form, name) {
    const checked = form.querySelector('input[name="' + name + '"]:checked');
    if (checked) return checked.value;
    const select = form.querySelector('select[name="' + name + '"]');
    return select ? select.value : "";
  }
  function sync(form) {
    form.querySelectorAll("[data-shown-for]").forEach(function (section) {
      section.hidden = !section.dataset.values.split(" ").includes(chosen(form, section.dataset.shownFor));
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form").forEach(function (form) {
      if (!form.querySelector("[data-shown-for]")) return;
      form.addEventListener("change", function () { sync(form); });
      sync(form);
    });
  });
})();
