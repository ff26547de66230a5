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

// PowerBank sign-up: buttons that save need the terms accepted first (the server checks too).
function syncTermsButtons(root) {
  root.querySelectorAll("form").forEach((form) => {
    const accept = form.querySelector("[data-accept-terms]");
    if (!accept) return;
    form.querySelectorAll("[data-needs-terms]").forEach((button) => {
      button.disabled = accept.disabled || !accept.checked;
    });
  });
}
document.addEventListener("DOMContentLoaded", () => syncTermsButtons(document));
document.addEventListener("htmx:load", (event) => syncTermsButtons(event.target.closest("form") || event.target));
document.addEventListener("change", (event) => {
  if (event.target.matches("[data-accept-terms]")) syncTermsButtons(event.target.form.parentElement || document);
});
