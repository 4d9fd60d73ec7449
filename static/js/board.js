/* micboard board: "Updated N s ago", connection banner, keyboard shortcuts.
   Plain ES2017, no dependencies besides htmx. Safe to load on pages without a board. */
(function () {
  "use strict";

  var GRID_ID = "board-grid";
  var skewMs = 0; // server clock minus browser clock, from the Date header of board responses
  var lastContact = Date.now(); // last successful answer from the server

  function grid() { return document.getElementById(GRID_ID); }
  function banner() { return document.getElementById("connection-banner"); }

  function isGridRequest(evt) {
    var elt = evt.detail && evt.detail.elt;
    return !!(elt && elt.id === GRID_ID);
  }

  function refreshSeconds() {
    var g = grid();
    var s = g ? parseFloat(g.getAttribute("data-refresh-seconds")) : NaN;
    return isFinite(s) && s > 0 ? s : 2;
  }

  function showBanner(text) {
    var b = banner();
    if (!b) { return; }
    if (text) { b.textContent = text; }
    b.hidden = false;
  }

  function hideBanner() {
    var b = banner();
    if (b) { b.hidden = true; }
  }

  function formatAge(seconds) {
    if (seconds < 60) { return seconds + " s ago"; }
    if (seconds < 3600) { return Math.floor(seconds / 60) + " min ago"; }
    if (seconds >= 86400) { return Math.floor(seconds / 86400) + " d ago"; }
    var h = Math.floor(seconds / 3600);
    var m = Math.floor((seconds % 3600) / 60);
    return h + " h " + m + " min ago";
  }

  function clock(seconds) {
    var h = Math.floor(seconds / 3600);
    var m = Math.floor((seconds % 3600) / 60);
    var s = seconds % 60;
    var mm = h ? (m < 10 ? "0" : "") + m : String(m);
    return (h ? h + ":" : "") + mm + ":" + (s < 10 ? "0" : "") + s;
  }

  // The server marks stale data with the poller's last heartbeat; the age counts here, never in a render.
  function tickStale() {
    var b = document.querySelector(".stale-banner[data-since]");
    var out = b && b.querySelector(".stale-age");
    if (!out) { return; }
    var since = Date.parse(b.getAttribute("data-since") || "") - skewMs;
    if (isNaN(since)) { return; }
    out.textContent = " (no data for " + clock(Math.max(0, Math.round((Date.now() - since) / 1000))) + ")";
  }

  function tick() {
    tickStale();
    var g = grid();
    var out = document.getElementById("updated-ago");
    if (!g || !out) { return; }
    // A 304 confirms the shown data is current (a stopped poller changes the ETag and
    // brings the stale banner), so the age counts from the last answer, not the last change.
    var changed = Date.parse(g.getAttribute("data-updated-at") || "") - skewMs;
    var when = isNaN(changed) ? lastContact : Math.max(changed, lastContact);
    var age = Math.max(0, Math.round((Date.now() - when) / 1000));
    out.textContent = "Updated " + formatAge(age);
    var status = document.getElementById("board-status");
    if (status) { status.classList.toggle("is-old", age > Math.max(30, 10 * refreshSeconds())); }
    // Watchdog: requests that neither fail nor succeed (hung network) also mean "not updating".
    if (Date.now() - lastContact > Math.max(15000, 5000 * refreshSeconds())) {
      showBanner("Server unreachable — board not updating");
    }
  }

  function noteServerDate(xhr) {
    if (!xhr || !xhr.getResponseHeader) { return; }
    var date = Date.parse(xhr.getResponseHeader("Date") || "");
    if (!isNaN(date)) { skewMs = date - Date.now(); }
  }

  function onFailure(evt) {
    if (!isGridRequest(evt)) { return; }
    var xhr = evt.detail && evt.detail.xhr;
    if (evt.type === "htmx:responseError" && xhr && (xhr.status === 401 || xhr.status === 403)) {
      // Session ended, role removed, kiosk link revoked or expired: reload so the server shows why.
      window.location.reload();
      return;
    }
    showBanner("Server unreachable — board not updating");
  }

  document.addEventListener("htmx:sendError", onFailure);
  document.addEventListener("htmx:responseError", onFailure);
  document.addEventListener("htmx:timeout", onFailure);

  document.addEventListener("htmx:afterRequest", function (evt) {
    if (!isGridRequest(evt) || !evt.detail.successful) { return; }
    lastContact = Date.now();
    noteServerDate(evt.detail.xhr);
    hideBanner();
  });

  function pathname(path) {
    try { return new URL(path, window.location.href).pathname; } catch (e) { return ""; }
  }

  // Only a grid may replace the grid: a redirected refresh (expired session -> login page)
  // reloads the page instead, anything else counts as a failed refresh.
  document.addEventListener("htmx:beforeSwap", function (evt) {
    if (!isGridRequest(evt) || !evt.detail.shouldSwap) { return; }
    var body = typeof evt.detail.serverResponse === "string" ? evt.detail.serverResponse : "";
    if (body.indexOf('id="' + GRID_ID + '"') !== -1) { return; }
    evt.detail.shouldSwap = false;
    var info = evt.detail.pathInfo || {};
    if (info.responsePath && info.requestPath && pathname(info.responsePath) !== pathname(info.requestPath)) {
      window.location.reload();
      return;
    }
    evt.detail.isError = true; // -> htmx:responseError -> banner
  });

  document.addEventListener("htmx:afterSwap", tick);

  // Keys 1-9: n-th group tab, 0: All (micboard's shortcuts).
  document.addEventListener("keydown", function (evt) {
    if (evt.defaultPrevented || evt.ctrlKey || evt.metaKey || evt.altKey || evt.isComposing) { return; }
    if (!/^[0-9]$/.test(evt.key)) { return; }
    var t = evt.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) { return; }
    var tab = document.querySelector('#group-tabs a[data-shortcut="' + evt.key + '"]');
    if (!tab) { return; }
    evt.preventDefault();
    window.location.assign(tab.href);
  });

  function start() {
    tick();
    window.setInterval(tick, 1000);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
