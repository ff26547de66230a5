// Small behaviours htmx does not cover; no inline scripts (the CSP forbids them).
document.addEventListener("keydown", (event) => {
  // Escape closes an open Actions menu and returns focus to its button.
  if (event.key !== "Escape") return;
  const open = document.querySelector("details.actions-menu[open]");
  if (open) {
    open.removeAttribute("open");
    open.querySelector("summary").focus();
  }
});
