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
