// Keyboard: "/" search, j/k rows, Enter opens, x ticks, n/p next/previous item, shift-click ticks a range, Ctrl-Enter submits, "?" lists keys.
"use strict";

(function () {
  const KEYS = [
    ["/", "Focus the search box"],
    ["j / k", "Next / previous row of the list"],
    ["Enter", "Open the current row"],
    ["x", "Tick or untick the current row"],
    ["n / p", "Next / previous item (on a trace opened from the list)"],
    ["Shift-click", "Tick every box between the last one ticked and this one"],
    ["Ctrl-Enter", "Submit the form you are typing in"],
    ["?", "Show or hide this list"],
    ["Esc", "Close this list, leave the search box"],
  ];

  let last = null; // the checkbox last ticked (by click or "x")

  function typing(target) {
    if (!target || !target.closest) return false;
    const field = target.closest("input, textarea, select, [contenteditable='true']");
    if (!field) return false;
    return !(field instanceof HTMLInputElement) || !["checkbox", "radio", "button", "submit", "reset"].includes(field.type);
  }

  // The rows a reader moves through: the first table of the page whose body rows hold a link.
  function rows() {
    for (const table of document.querySelectorAll("main table")) {
      const found = Array.from(table.querySelectorAll("tbody tr")).filter(function (tr) {
        return tr.querySelector("a[href]") && tr.offsetParent !== null;
      });
      if (found.length) return found;
    }
    return [];
  }

  function current() {
    return document.querySelector("tr.kb-current");
  }

  function move(step) {
    const list = rows();
    if (!list.length) return;
    const at = list.indexOf(current());
    const next = list[Math.min(Math.max(at < 0 ? (step > 0 ? 0 : list.length - 1) : at + step, 0), list.length - 1)];
    list.forEach(function (tr) { tr.classList.remove("kb-current"); tr.removeAttribute("aria-selected"); });
    next.classList.add("kb-current");
    next.setAttribute("aria-selected", "true");
    next.scrollIntoView({ block: "nearest" });
  }

  function searchBox() {
    return document.querySelector("main input[type=search], main input[name=q], main input[name=search]");
  }

  function overlay() {
    let box = document.getElementById("keys-help");
    if (box) return box;
    box = document.createElement("div");
    box.id = "keys-help";
    box.className = "keys-help";
    box.setAttribute("role", "dialog");
    box.setAttribute("aria-label", "Keyboard shortcuts");
    box.hidden = true;
    const card = document.createElement("div");
    card.className = "card";
    const title = document.createElement("h2");
    title.textContent = "Keyboard shortcuts";
    const table = document.createElement("table");
    table.className = "table";
    for (const [key, what] of KEYS) {
      const tr = table.insertRow();
      const k = tr.insertCell();
      const kbd = document.createElement("kbd");
      kbd.textContent = key;
      k.append(kbd);
      tr.insertCell().textContent = what;
    }
    const close = document.createElement("button");
    close.type = "button";
    close.textContent = "Close";
    close.addEventListener("click", function () { box.hidden = true; });
    card.append(title, table, close);
    box.append(card);
    box.addEventListener("click", function (event) { if (event.target === box) box.hidden = true; });
    document.body.append(box);
    return box;
  }

  document.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      const form = event.target.closest && event.target.closest("form");
      if (form) {
        event.preventDefault();
        form.requestSubmit();
      }
      return;
    }
    if (event.key === "Escape") {
      const box = document.getElementById("keys-help");
      if (box && !box.hidden) box.hidden = true;
      else if (typing(event.target)) event.target.blur();
      return;
    }
    if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "/") {
      const box = searchBox();
      if (box) {
        event.preventDefault();
        box.focus();
        box.select();
      }
    } else if (event.key === "?") {
      const box = overlay();
      box.hidden = !box.hidden;
    } else if (event.key === "j" || event.key === "k") {
      move(event.key === "j" ? 1 : -1);
    } else if (event.key === "Enter") {
      const tr = current();
      const link = tr && tr.querySelector("a[href]");
      if (link) {
        event.preventDefault();
        link.click();
      }
    } else if (event.key === "n" || event.key === "p") {
      const link = document.querySelector(event.key === "n" ? "main a[rel=next]" : "main a[rel=prev]");
      if (link) {
        event.preventDefault();
        link.click();
      }
    } else if (event.key === "x") {
      const tr = current();
      const box = tr && tr.querySelector("input[type=checkbox]");
      if (box) {
        box.click();
        last = box;
      }
    }
  });

  // Shift-click ticks the range between the last box clicked and this one (same name, same page).
  document.addEventListener("click", function (event) {
    const box = event.target;
    if (!(box instanceof HTMLInputElement) || box.type !== "checkbox" || !box.name) return;
    if (event.shiftKey && last && last !== box && last.name === box.name && document.contains(last)) {
      const all = Array.from(document.querySelectorAll("input[type=checkbox][name='" + CSS.escape(box.name) + "']"));
      const a = all.indexOf(last);
      const b = all.indexOf(box);
      if (a >= 0 && b >= 0) {
        for (const other of all.slice(Math.min(a, b), Math.max(a, b) + 1)) {
          if (other.checked !== box.checked && !other.disabled) {
            other.checked = box.checked;
            other.dispatchEvent(new Event("change", { bubbles: true }));
          }
        }
      }
    }
    last = box;
  });
})();
