// Sends the session's CSRF token (from <meta name="csrf-token">) with every htmx request.
// A file of its own: the Content-Security-Policy allows no inline script.
document.addEventListener("DOMContentLoaded", function () {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (!meta) { return; }
  document.body.setAttribute("hx-headers", JSON.stringify({ "X-CSRF-Token": meta.content }));
});
