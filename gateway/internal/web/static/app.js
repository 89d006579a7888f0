// Hearth dashboard: copy buttons. A button with data-copy="ID" copies the text of the element
// with that id, and says so in its own label (announced to screen readers by aria-live).
"use strict";
document.addEventListener("click", async (ev) => {
  const btn = ev.target.closest("button[data-copy]");
  if (!btn) return;
  const src = document.getElementById(btn.dataset.copy);
  if (!src) return;
  const text = src.textContent.trim();
  const label = btn.querySelector(".label") || btn;
  const done = (ok) => {
    label.textContent = ok ? "Copied" : "Select and copy by hand";
    setTimeout(() => { label.textContent = "Copy"; }, 3000);
  };
  try {
    await navigator.clipboard.writeText(text);
    done(true);
  } catch (e) {
    // Plain http on a LAN address is not a secure context: select the text, try the old way.
    const range = document.createRange();
    range.selectNodeContents(src);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    done(document.execCommand && document.execCommand("copy"));
  }
});
