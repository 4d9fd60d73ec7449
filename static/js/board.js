/* micboard board: refreshes that send back what the screen shows, "Updated N s ago", connection banner,
   keyboard shortcuts. Plain ES2017, no dependencies besides htmx. Safe to load on pages without a board. */
(function () {
  "use strict";

  var GRID_ID = "board-grid";
  var skewMs = 0; // server clock minus browser clock, from the Date header of board responses
  var lastContact = Date.now(); // last successful answer from the server
  var lastAnswer = Date.now(); // last HTTP answer of any kind: the server is reachable, even when it refuses

  function grid() { return document.getElementById(GRID_ID); }
  // The grid's bookkeeping (ETag, snapshot id, when the data was built): a refresh that sends only
  // the changed tiles replaces it out of band, the grid element itself stays.
  function meta() { return document.getElementById("board-meta"); }
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

  // While the banner shows, the tiles are greyed like stale data: they are not being updated.
  function showBanner(text) {
    var b = banner();
    if (!b) { return; }
    if (text) { b.textContent = text; }
    b.hidden = false;
    var w = document.getElementById("board");
    if (w) { w.classList.add("board-unreachable"); }
  }

  function hideBanner() {
    var b = banner();
    if (b) { b.hidden = true; }
    var w = document.getElementById("board");
    if (w) { w.classList.remove("board-unreachable"); }
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
    var m = meta();
    var changed = Date.parse((m && m.getAttribute("data-updated-at")) || "") - skewMs;
    var when = isNaN(changed) ? lastContact : Math.max(changed, lastContact);
    var age = Math.max(0, Math.round((Date.now() - when) / 1000));
    out.textContent = "Updated " + formatAge(age);
    var status = document.getElementById("board-status");
    if (status) { status.classList.toggle("is-old", age > Math.max(30, 10 * refreshSeconds())); }
    // Watchdog: requests that neither fail nor succeed (hung network) also mean "not updating".
    if (Date.now() - lastAnswer > Math.max(15000, 5000 * refreshSeconds())) {
      showBanner("Server unreachable — board not updating");
    }
  }

  function boardWrap() { return document.getElementById("board"); }

  // Leave the board for All (what this screen showed is gone).
  function goAll() {
    var w = boardWrap();
    window.location.assign((w && w.getAttribute("data-all-url")) || "/");
  }

  // ---- fit the tiles to the screen ------------------------------------------------------
  // Picks the column count that gives the largest tiles for this many tiles in this viewport;
  // CSS then stretches the rows to fill the height (classes only: the page's CSP has no inline styles).
  var BASE_W = 250, BASE_H = 150, MIN_W = 210, MIN_H = 128, MAX_TRACKS = 12;
  var fitClasses = [];

  function fit() {
    var w = boardWrap();
    var g = grid();
    var tiles = g && g.querySelector(".board-tiles");
    if (!w || !tiles) { return; }
    var n = tiles.querySelectorAll(":scope > .tile").length;
    fitClasses.forEach(function (c) { w.classList.remove(c); });
    fitClasses = [];
    if (!n) { w.classList.remove("board-fit"); return; }
    var style = window.getComputedStyle(tiles);
    var gap = parseFloat(style.columnGap) || 10;
    var width = tiles.clientWidth;
    var main = document.getElementById("main");
    var padBottom = main ? parseFloat(window.getComputedStyle(main).paddingBottom) || 0 : 0;
    var height = window.innerHeight - tiles.getBoundingClientRect().top - window.scrollY - padBottom;
    var best = null;
    for (var c = 1; c <= Math.min(n, MAX_TRACKS); c++) {
      var r = Math.ceil(n / c);
      var tw = (width - (c - 1) * gap) / c;
      var th = (height - (r - 1) * gap) / r;
      if (tw < MIN_W && c > 1) { break; }
      var fits = th >= MIN_H;
      var scale = Math.min(tw / BASE_W, th / BASE_H);
      var cand = { c: c, r: r, fits: fits, scale: scale, area: tw * th };
      if (!best || (cand.fits && !best.fits) ||
          (cand.fits === best.fits && (cand.scale > best.scale + 0.01 ||
            (Math.abs(cand.scale - best.scale) <= 0.01 && cand.area > best.area)))) {
        best = cand;
      }
    }
    // Too many tiles for this screen (or a phone): the tiles flow at their natural size and the page scrolls.
    if (!best || !best.fits || best.r > MAX_TRACKS) { w.classList.remove("board-fit"); return; }
    fitClasses = ["cols-" + best.c, "rows-" + best.r];
    fitClasses.forEach(function (cls) { w.classList.add(cls); });
    w.classList.add("board-fit");
  }

  function noteServerDate(xhr) {
    if (!xhr || !xhr.getResponseHeader) { return; }
    var date = Date.parse(xhr.getResponseHeader("Date") || "");
    if (!isNaN(date)) { skewMs = date - Date.now(); }
  }

  // A refresh that failed. Only a network error, a time-out or a 5xx means "server unreachable":
  // a 4xx is an answer (the server is there and refuses), handled by what it means.
  function onFailure(evt) {
    if (!isGridRequest(evt)) { return; }
    var xhr = evt.detail && evt.detail.xhr;
    var status = evt.type === "htmx:responseError" && xhr ? xhr.status : 0;
    if (status === 401 || status === 403) {
      // Session ended, role removed, kiosk link revoked or expired: reload so the server shows why.
      window.location.reload();
      return;
    }
    if (status === 404 || status === 410) { goAll(); return; } // what this screen showed is gone
    if (status >= 400 && status < 500) {
      showBanner("The server refused the refresh (HTTP " + status + ") — retrying");
      return;
    }
    showBanner("Server unreachable — board not updating");
  }

  // Each refresh says what this screen shows: the ETag (304 when the board is unchanged) and the
  // snapshot id of its tiles (the server then sends only the tiles that changed since).
  document.addEventListener("htmx:configRequest", function (evt) {
    if (!isGridRequest(evt)) { return; }
    var m = meta();
    var etag = m && m.getAttribute("data-etag");
    var state = m && m.getAttribute("data-state");
    if (etag) { evt.detail.headers["If-None-Match"] = etag; }
    if (state) { evt.detail.headers["X-Board-State"] = state; }
  });

  document.addEventListener("htmx:sendError", onFailure);
  document.addEventListener("htmx:responseError", onFailure);
  document.addEventListener("htmx:timeout", onFailure);

  document.addEventListener("htmx:afterRequest", function (evt) {
    if (!isGridRequest(evt)) { return; }
    var xhr = evt.detail.xhr;
    if (xhr && xhr.status) { lastAnswer = Date.now(); }
    if (!evt.detail.successful) { return; }
    lastContact = Date.now();
    noteServerDate(evt.detail.xhr);
    hideBanner();
  });

  function pathname(path) {
    try { return new URL(path, window.location.href).pathname; } catch (e) { return ""; }
  }

  // Only a grid (or the changed tiles, which come with the grid's bookkeeping) may replace the grid:
  // a redirected refresh (expired session -> login page) reloads the page instead, anything else
  // counts as a failed refresh.
  document.addEventListener("htmx:beforeSwap", function (evt) {
    if (!isGridRequest(evt) || !evt.detail.shouldSwap) { return; }
    var body = typeof evt.detail.serverResponse === "string" ? evt.detail.serverResponse : "";
    if (body.indexOf('id="' + GRID_ID + '"') !== -1 || body.indexOf('id="board-meta"') !== -1) { return; }
    evt.detail.shouldSwap = false;
    var info = evt.detail.pathInfo || {};
    if (info.responsePath && info.requestPath && pathname(info.responsePath) !== pathname(info.requestPath)) {
      window.location.reload();
      return;
    }
    evt.detail.isError = true; // -> htmx:responseError -> banner
  });

  // Once per refresh: the grid's own swap (a whole grid) or its settle after out-of-band swaps.
  document.addEventListener("htmx:afterSettle", function (evt) {
    if (evt.target && evt.target.id === GRID_ID) { fit(); tick(); }
  });
  window.addEventListener("resize", fit);

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
    fit();
    tick();
    window.setInterval(tick, 1000);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
