// Fleetweb's only script besides htmx. The Content-Security-Policy allows no inline script, style or event
// handler, so the few behaviours pages need live here, bound by data attributes.
(function () {
  "use strict";
  // <form data-confirm="…">: ask before submitting (destructive actions).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      event.stopPropagation();
    }
  }, true);
  // Tabs loaded over htmx: the clicked one becomes the active one.
  document.addEventListener("htmx:afterRequest", function (event) {
    var link = event.detail && event.detail.elt;
    if (!link || !link.closest) return;
    var tabs = link.closest(".tabs");
    if (!tabs || link.tagName !== "A") return;
    tabs.querySelectorAll("a").forEach(function (a) { a.classList.toggle("active", a === link); });
  });
})();
