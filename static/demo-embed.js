// The demo partner page: connect on a click (a popup needs the user's
// gesture) and show the result with textContent only.
(function () {
  "use strict";
  var button = document.getElementById("connect");
  var status = document.getElementById("status");
  var cart = document.getElementById("cart");
  function show(view) {
    status.textContent = view.user_id ? "Hello, " + view.user_id + "!" : "Hello, guest!";
    status.setAttribute("data-state", "connected");
    cart.textContent = "";
    var items = view.data && Array.isArray(view.data.cart) ? view.data.cart : [];
    items.forEach(function (item) {
      var li = document.createElement("li");
      li.textContent = String(item);
      cart.appendChild(li);
    });
  }
  function fail(error) {
    status.textContent = "Could not connect: " + (error && error.code ? error.code : String(error));
    status.setAttribute("data-state", "failed");
    status.setAttribute("data-code", error && error.code ? error.code : "unknown");
  }
  function run() {
    var mode = document.getElementById("mode").value;
    status.textContent = "Connecting…";
    status.setAttribute("data-state", "connecting");
    window.SessionBridge.connect({ from: button.getAttribute("data-from"), mode: mode, returnTo: "/embed" }).then(show, fail);
  }
  button.addEventListener("click", run);
  // Coming back from the redirect flow: the session is already here.
  fetch("/bridge/session", { credentials: "same-origin", headers: { "Accept": "application/json" } })
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (view) { if (view) { show(view); } });
})();
