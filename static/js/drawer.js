/* Channel detail drawer on the board: a tile's link (a real page without JavaScript) opens the
   channel's details in a drawer beside the grid, so the grid's refreshes never close it.
   Plain ES2017 over htmx; no inline code (strict CSP). */
(function () {
  "use strict";

  var DRAWER_ID = "channel-drawer";
  var openChannel = ""; // data-channel-id of the tile whose details are shown

  function drawer() { return document.getElementById(DRAWER_ID); }

  function ensureDrawer() {
    var d = drawer();
    if (d || !document.getElementById("board-grid")) { return d; }
    d = document.createElement("aside");
    d.id = DRAWER_ID;
    d.className = "drawer";
    d.hidden = true;
    d.setAttribute("aria-label", "Channel details");
    d.setAttribute("tabindex", "-1");
    document.body.appendChild(d);
    return d;
  }

  function tileLink(channelId) {
    return channelId ? document.querySelector('article.tile[data-channel-id="' + channelId + '"] a.tile-link') : null;
  }

  function markSelected() {
    var tiles = document.querySelectorAll("article.tile.tile-selected");
    for (var i = 0; i < tiles.length; i++) { tiles[i].classList.remove("tile-selected"); }
    var link = tileLink(openChannel);
    if (link) { link.parentNode.classList.add("tile-selected"); }
  }

  function revealCloseButtons(root) {
    var buttons = root.querySelectorAll("[data-drawer-close]");
    for (var i = 0; i < buttons.length; i++) { buttons[i].hidden = false; }
  }

  // The drawer starts under the app bar so its links (scenes, groups, log out) stay in reach.
  function placeBelowAppBar(d) {
    var bar = document.querySelector(".app-bar");
    var bottom = bar ? Math.max(0, Math.round(bar.getBoundingClientRect().bottom)) : 0;
    d.style.top = bottom + "px";
  }

  function close() {
    var d = drawer();
    if (!d || d.hidden) { return; }
    d.hidden = true;
    d.textContent = ""; // stops the readings' refresh
    document.body.classList.remove("drawer-open");
    var link = tileLink(openChannel);
    openChannel = "";
    markSelected();
    if (link) { link.focus(); }
  }

  function open(link) {
    var d = ensureDrawer();
    var tile = link.closest("article.tile");
    if (!d || !window.htmx) { window.location.assign(link.href); return; }
    openChannel = tile ? tile.getAttribute("data-channel-id") : "";
    markSelected();
    window.htmx.ajax("GET", link.href, { target: d, swap: "innerHTML" }).then(function () {
      if (!d.firstElementChild) { return; }
      placeBelowAppBar(d);
      d.hidden = false;
      document.body.classList.add("drawer-open");
      revealCloseButtons(d);
      if (tile && tile.scrollIntoView) { tile.scrollIntoView({ block: "nearest" }); }
      var title = d.querySelector(".drawer-title");
      (title || d).setAttribute("tabindex", "-1");
      (title || d).focus();
    });
  }

  document.addEventListener("click", function (evt) {
    var target = evt.target;
    if (!(target instanceof Element)) { return; }
    if (target.closest("[data-drawer-close]")) { close(); return; }
    var link = target.closest("a.tile-link");
    if (!link || evt.button !== 0 || evt.ctrlKey || evt.metaKey || evt.shiftKey || evt.altKey) { return; }
    evt.preventDefault();
    open(link);
  });

  document.addEventListener("keydown", function (evt) {
    if (evt.key === "Escape" && drawer() && !drawer().hidden) { close(); }
  });

  function inDrawer(evt) {
    var d = drawer();
    var t = evt.detail && (evt.detail.target || evt.detail.elt);
    return !!(d && t && d.contains(t));
  }

  // A drawer request sent to the login page (session ended) reloads, like the grid does.
  document.addEventListener("htmx:beforeSwap", function (evt) {
    if (!inDrawer(evt)) { return; }
    var info = evt.detail.pathInfo || {};
    try {
      if (info.responsePath && new URL(info.responsePath, window.location.href).pathname.indexOf("/accounts/login/") === 0) {
        evt.detail.shouldSwap = false;
        window.location.reload();
      }
    } catch (e) { /* keep the swap */ }
  });

  document.addEventListener("htmx:responseError", function (evt) {
    var d = drawer();
    if (!inDrawer(evt) || !d) { return; }
    var status = evt.detail.xhr ? evt.detail.xhr.status : 0;
    if (status === 404) {
      d.textContent = "";
      var p = document.createElement("p");
      p.className = "drawer-notice";
      p.textContent = "This channel no longer exists.";
      d.appendChild(p);
      d.hidden = false;
    }
  });

  function afterSwap() {
    var d = drawer();
    if (d && !d.hidden) { revealCloseButtons(d); } // the form's answer replaced the drawer's content
    if (openChannel) { markSelected(); } // a refreshed grid brings new tiles: mark the open one again
  }
  document.addEventListener("htmx:afterSwap", afterSwap);
  document.addEventListener("htmx:afterSettle", afterSwap);

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ensureDrawer);
  } else {
    ensureDrawer();
  }
})();
