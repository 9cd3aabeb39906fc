// Page helpers loaded by base.html (the CSP allows no inline script).
"use strict";

// htmx leaves the page as it was when a request fails; say so instead.
(function () {
  function showError(text) {
    let box = document.getElementById("request-error");
    if (!box) {
      box = document.createElement("div");
      box.id = "request-error";
      box.className = "error-box request-error";
      box.setAttribute("role", "alert");
      const close = document.createElement("button");
      close.type = "button";
      close.className = "link close";
      close.setAttribute("aria-label", "Dismiss");
      close.textContent = "×";
      close.addEventListener("click", function () { box.remove(); });
      box.append(document.createElement("span"), close);
      document.querySelector("main").prepend(box);
    }
    box.firstChild.textContent = text;
  }

  // In DEBUG, django-htmx's script replaces the whole document with any 400/403/404/500 answer (to show
  // Django's error pages). A response that the htmx-config's responseHandling swaps as a normal answer
  // (the app's 400s: a form's inline errors) is the app's own, so it must not reach that handler: stop it
  // in the capture phase, before it gets to the element and to the bubbling listener on document. htmx
  // itself goes on (it only stops on preventDefault) and swaps the fragment into its target.
  function swapsAsAnswer(status) {
    const rules = (window.htmx && htmx.config.responseHandling) || [];
    for (const rule of rules) {
      if (new RegExp(rule.code).test(String(status))) return rule.swap && !rule.error;
    }
    return false;
  }
  document.addEventListener("htmx:beforeOnLoad", function (event) {
    if (event.detail.xhr.status >= 400 && swapsAsAnswer(event.detail.xhr.status)) event.stopPropagation();
  }, true);
  document.addEventListener("htmx:responseError", function (event) {
    const xhr = event.detail.xhr;
    const status = xhr.status + (xhr.statusText ? " " + xhr.statusText : "");
    const hint = xhr.status === 403 ? " Your session may have expired: reload the page." : "";
    showError("The request failed (" + status + ")." + hint);
  });
  document.addEventListener("htmx:sendError", function () {
    showError("The server could not be reached. Check that it is running and try again.");
  });
  document.addEventListener("htmx:beforeRequest", function () {
    const box = document.getElementById("request-error");
    if (box) box.remove();
  });
})();

// A run's log follows its newest line, like `tail -f`, unless the reader scrolled up.
(function () {
  function toBottom(box) {
    box.scrollTop = box.scrollHeight;
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".log").forEach(toBottom);
  });
  let following = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    const box = event.detail.target.closest(".log");
    following = box && box.scrollHeight - box.scrollTop - box.clientHeight < 40 ? box : null;
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (following) toBottom(following);
    following = null;
  });
})();

// "Compare N selected": N is what is ticked now, counted as boxes change (rows loaded later included).
(function () {
  function recount() {
    document.querySelectorAll("button[data-counts]").forEach(function (button) {
      const n = document.querySelectorAll(button.dataset.counts + ":checked").length;
      button.textContent = "Compare " + n + " selected";
    });
  }
  document.addEventListener("DOMContentLoaded", recount);
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("input[type=checkbox]")) recount();
  });
  document.addEventListener("htmx:afterSettle", recount);
})();

// The launch form shows the fields of the chosen training objective (without JS every field shows;
// the server ignores those of other objectives).
(function () {
  function apply() {
    const select = document.getElementById("id_objective");
    if (!select) return;
    document.querySelectorAll("[data-objectives]").forEach(function (el) {
      const wanted = el.getAttribute("data-objectives").split(" ");
      el.hidden = wanted.indexOf(select.value) === -1;
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    const select = document.getElementById("id_objective");
    if (select) select.addEventListener("change", apply);
    apply();
  });
})();
