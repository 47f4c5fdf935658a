// session-bridge handshake (flow B). Written once; served as a classic
// script (window.SessionBridge) and as an ES module (export connect).
// No dependencies. Tokens are never stored and never put into the DOM.
var MODES = ["auto", "iframe", "popup", "redirect"];
var TOKEN_SHAPE = /^[A-Za-z0-9_-]{1,2048}\.[A-Za-z0-9_-]{1,2048}\.[A-Za-z0-9_-]{0,512}$/;
var CODE_SHAPE = /^[a-z_]{1,64}$/;
var POPUP_TIMEOUT_MS = 60000;
var REDIRECT_GUARD_MS = 60000;

function bridgeError(code, message) {
  var error = new Error(message || code);
  error.name = "SessionBridgeError";
  error.code = code;
  return error;
}

function base64url(bytes) {
  var text = "";
  for (var i = 0; i < bytes.length; i++) { text += String.fromCharCode(bytes[i]); }
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// PKCE S256: the verifier stays in this page; only its hash travels.
async function makePair() {
  var random = new Uint8Array(32);
  crypto.getRandomValues(random);
  var verifier = base64url(random);
  var digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return { verifier: verifier, challenge: base64url(new Uint8Array(digest)) };
}

function exactOrigin(from) {
  var url;
  try { url = new URL(String(from)); } catch (e) { url = null; }
  if (!url || (url.protocol !== "https:" && url.protocol !== "http:") || url.origin !== String(from).replace(/\/$/, "")) {
    throw bridgeError("invalid_options", "from must be an exact origin, such as https://id.example.com");
  }
  return url.origin;
}

// Only a well-formed message from the asked origin AND our own frame or
// popup counts; everything else is ignored.
function readMessage(event, origin, source) {
  if (event.origin !== origin || !source || event.source !== source) { return null; }
  var data = event.data;
  if (data === null || typeof data !== "object" || Array.isArray(data)) { return null; }
  if (data.type === "sb:token" && typeof data.token === "string" && TOKEN_SHAPE.test(data.token)) {
    return { type: "token", token: data.token };
  }
  if (data.type === "sb:no-session") { return { type: "no-session" }; }
  if (data.type === "sb:error" && typeof data.code === "string" && CODE_SHAPE.test(data.code)) {
    return { type: "error", code: data.code };
  }
  return null;
}

function waitForMessage(origin, source, timeoutMs, popup) {
  return new Promise(function (resolve) {
    var finished = false;
    var timer = setTimeout(function () { finish({ type: "timeout" }); }, timeoutMs);
    var poll = popup ? setInterval(function () { if (popup.closed) { finish({ type: "closed" }); } }, 250) : null;
    function onMessage(event) {
      var message = readMessage(event, origin, source());
      if (message) { finish(message); }
    }
    function finish(result) {
      if (finished) { return; }
      finished = true;
      clearTimeout(timer);
      if (poll) { clearInterval(poll); }
      window.removeEventListener("message", onMessage);
      resolve(result);
    }
    window.addEventListener("message", onMessage);
  });
}

function frameUrl(origin, challenge, mode) {
  return origin + "/bridge/frame?to=" + encodeURIComponent(location.origin) +
    "&challenge=" + challenge + "&mode=" + mode;
}

async function viaIframe(origin, pair, timeoutMs) {
  var frame = document.createElement("iframe");
  frame.hidden = true;
  frame.title = "session-bridge";
  frame.setAttribute("aria-hidden", "true");
  var answer = waitForMessage(origin, function () { return frame.contentWindow; }, timeoutMs, null);
  frame.src = frameUrl(origin, pair.challenge, "iframe");
  (document.body || document.documentElement).appendChild(frame);
  try { return await answer; } finally { frame.remove(); }
}

async function viaPopup(origin, pair) {
  var popup = window.open(frameUrl(origin, pair.challenge, "popup"), "session-bridge", "popup,width=480,height=600");
  if (!popup) { return { type: "blocked" }; }
  try {
    return await waitForMessage(origin, function () { return popup; }, POPUP_TIMEOUT_MS, popup);
  } finally {
    try { popup.close(); } catch (e) { /* already gone */ }
  }
}

function redirectGuardKey(origin) { return "session-bridge:redirect:" + origin; }

// Flow A by top-level navigation. A marker (never a token) stops a loop
// when the page comes back without a session.
function viaRedirect(origin, returnTo) {
  var key = redirectGuardKey(origin);
  var last = Number(sessionStorage.getItem(key) || 0);
  if (Date.now() - last < REDIRECT_GUARD_MS) {
    sessionStorage.removeItem(key);
    throw bridgeError("redirect_failed", "the redirect hand-off came back without a session");
  }
  sessionStorage.setItem(key, String(Date.now()));
  location.assign("/bridge/start?from=" + encodeURIComponent(origin) + "&return_to=" + encodeURIComponent(returnTo));
  return new Promise(function () { /* the page is navigating away */ });
}

async function fetchJson(path, init) {
  var response;
  try { response = await fetch(path, init); } catch (e) { throw bridgeError("network_error", String(e)); }
  var body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  return { ok: response.ok, status: response.status, body: body };
}

async function ownSession() {
  var answer = await fetchJson("/bridge/session", { credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" } });
  return answer.ok && answer.body ? answer.body : null;
}

async function exchange(token, verifier, origin) {
  var answer = await fetchJson("/bridge/exchange", {
    method: "POST",
    credentials: "same-origin",
    cache: "no-store",
    headers: { "Content-Type": "application/json", "Accept": "application/json" },
    body: JSON.stringify({ token: token, verifier: verifier, from: origin })
  });
  if (answer.ok && answer.body) { return answer.body; }
  var code = answer.body && typeof answer.body.code === "string" ? answer.body.code : "exchange_failed";
  throw bridgeError(code, answer.body && answer.body.detail);
}

async function connect(options) {
  options = options || {};
  var origin = exactOrigin(options.from);
  var mode = options.mode === undefined ? "auto" : options.mode;
  if (MODES.indexOf(mode) < 0) { throw bridgeError("invalid_options", "mode must be auto, iframe, popup or redirect"); }
  var timeoutMs = typeof options.timeoutMs === "number" && options.timeoutMs > 0 ? options.timeoutMs : 2000;
  var returnTo = typeof options.returnTo === "string" ? options.returnTo : location.pathname + location.search;
  // This site may already have the session (e.g. the page a redirect returned to).
  var mine = await ownSession();
  if (mine) {
    sessionStorage.removeItem(redirectGuardKey(origin));
    return mine;
  }
  var steps = mode === "auto" ? ["iframe", "popup", "redirect"] : [mode];
  var failure = "no_session";
  for (var i = 0; i < steps.length; i++) {
    if (steps[i] === "redirect") { return viaRedirect(origin, returnTo); }
    var pair = await makePair();
    var answer = steps[i] === "iframe" ? await viaIframe(origin, pair, timeoutMs) : await viaPopup(origin, pair);
    if (answer.type === "token") { return exchange(answer.token, pair.verifier, origin); }
    if (answer.type === "error") { throw bridgeError(answer.code); }
    failure = { "no-session": "no_session", blocked: "popup_blocked", closed: "popup_closed", timeout: "timeout" }[answer.type];
  }
  throw bridgeError(failure);
}
