/* micboard alerts: the badge opens the alert list in place, ages count here (never in a render), and the
   front-of-house board's optional sound. Plain ES2017, no dependencies besides htmx; safe on any page.

   Sound: off by default and remembered in localStorage. Browsers allow audio only after a user gesture,
   so the AudioContext is created (and resumed) only in the click on the toggle; a screen reloaded with the
   sound on waits for one tap on the toggle. A tone plays when an open alert appears that this screen
   has not listed before: not on every refresh, not for acknowledged alerts, and not for audio peaks
   (the list leaves them out of data-open-ids: a singer's every peak would beep; the tile flashes). */
(function () {
  "use strict";

  var STORE_KEY = "micboard.alertSound";
  var skewMs = 0; // server clock minus browser clock, from the Date header of the list's refreshes
  var audio = null; // the AudioContext, created in a click on the toggle
  var seen = null; // ids of open alerts this screen has listed (null until the first list is read)

  function list() { return document.getElementById("alerts-list"); }
  function soundButton() { return document.getElementById("alerts-sound"); }

  function wanted() {
    try { return window.localStorage.getItem(STORE_KEY) === "on"; } catch (e) { return false; }
  }

  function remember(on) {
    try { window.localStorage.setItem(STORE_KEY, on ? "on" : "off"); } catch (e) { /* private mode: not kept */ }
  }

  function formatAge(seconds) {
    if (seconds < 60) { return seconds + " s"; }
    if (seconds < 3600) { return Math.floor(seconds / 60) + " min"; }
    var h = Math.floor(seconds / 3600);
    return h + " h " + Math.floor((seconds % 3600) / 60) + " min";
  }

  function tickAges() {
    var ages = document.querySelectorAll(".alert-age[data-since]");
    for (var i = 0; i < ages.length; i++) {
      var since = Date.parse(ages[i].getAttribute("data-since") || "") - skewMs;
      if (isNaN(since)) { continue; }
      ages[i].textContent = formatAge(Math.max(0, Math.round((Date.now() - since) / 1000))) + " ago";
    }
  }

  // ---- sound -------------------------------------------------------------------------------------------
  function showSound() {
    var b = soundButton();
    if (!b) { return; }
    var on = wanted();
    var waiting = on && !(audio && audio.state === "running");
    b.hidden = false;
    b.setAttribute("aria-pressed", on ? "true" : "false");
    b.classList.toggle("alerts-sound-waiting", waiting);
    b.textContent = !on ? "Sound off" : waiting ? "Sound on (tap to allow)" : "Sound on";
    b.title = on ? "A tone plays when a new alert opens" : "Play a tone when a new alert opens";
  }

  function tone(ctx) {
    var t = ctx.currentTime;
    [0, 0.22].forEach(function (start) {
      var osc = ctx.createOscillator();
      var gain = ctx.createGain();
      osc.type = "sine";
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, t + start);
      gain.gain.exponentialRampToValueAtTime(0.25, t + start + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + start + 0.18);
      osc.connect(gain);
      gain.connect(ctx.destination);
      osc.start(t + start);
      osc.stop(t + start + 0.2);
    });
  }

  function play() {
    var b = soundButton();
    if (!b || !wanted() || !audio || audio.state !== "running") { return; }
    tone(audio);
    b.setAttribute("data-played", String((parseInt(b.getAttribute("data-played"), 10) || 0) + 1));
  }

  function onSoundClick() {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    var armed = audio && audio.state === "running";
    if (wanted() && armed) {
      remember(false);
      showSound();
      return;
    }
    remember(true);
    if (!Ctx) { showSound(); return; }
    if (!audio) { audio = new Ctx(); }
    var resumed = audio.state === "running" ? Promise.resolve() : audio.resume();
    resumed.then(showSound, showSound);
    showSound();
  }

  // ---- new open alerts -------------------------------------------------------------------------------
  function openIds() {
    var l = list();
    var text = (l && l.getAttribute("data-open-ids")) || "";
    return text.split(/\s+/).filter(Boolean);
  }

  function noteAlerts() {
    var ids = openIds();
    if (seen === null) { seen = {}; ids.forEach(function (id) { seen[id] = true; }); return; }
    var fresh = ids.filter(function (id) { return !seen[id]; });
    ids.forEach(function (id) { seen[id] = true; });
    if (fresh.length) { play(); }
  }

  // ---- the badge opens the panel in place (without JavaScript it is a link to the list page) --------
  document.addEventListener("click", function (evt) {
    var badge = evt.target && evt.target.closest ? evt.target.closest("#alerts-badge") : null;
    var panel = document.getElementById("alerts-panel");
    if (!badge || !panel || evt.ctrlKey || evt.metaKey || evt.shiftKey || evt.button) { return; }
    evt.preventDefault();
    panel.hidden = !panel.hidden;
    badge.setAttribute("aria-expanded", panel.hidden ? "false" : "true");
  });

  function isListRequest(evt) {
    var elt = evt.detail && evt.detail.elt;
    return !!(elt && (elt.id === "alerts-list" || (elt.closest && elt.closest("#alerts-list"))));
  }

  document.addEventListener("htmx:afterRequest", function (evt) {
    if (!isListRequest(evt) || !evt.detail.xhr) { return; }
    var date = Date.parse(evt.detail.xhr.getResponseHeader("Date") || "");
    if (!isNaN(date)) { skewMs = date - Date.now(); }
  });

  document.addEventListener("htmx:afterSettle", function () {
    if (list()) { noteAlerts(); tickAges(); }
  });

  function start() {
    var b = soundButton();
    if (b) { b.addEventListener("click", onSoundClick); showSound(); }
    var badge = document.getElementById("alerts-badge");
    if (badge && document.getElementById("alerts-panel")) {
      badge.setAttribute("aria-expanded", document.getElementById("alerts-panel").hidden ? "false" : "true");
    }
    noteAlerts();
    tickAges();
    window.setInterval(tickAges, 1000);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
