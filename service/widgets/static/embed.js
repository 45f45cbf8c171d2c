/* Pollbox embed loader:
 *   <script async src="https://POLLBOX/embed.js" data-poll="ID"
 *           data-theme="light|dark|auto" data-lang="de" data-context="/page"
 *           data-accent="#0055aa" data-bg="#ffffff" data-fg="#111111"></script>
 * Each such tag becomes a lazy, titled iframe that takes the height its widget reports.
 * Messages are accepted only from the Pollbox origin that served this file and only
 * from the iframe they size; the widget only posts to the origin of this page. */
(function () {
  "use strict";

  var MESSAGE = "pollbox:resize";
  var INITIAL_HEIGHT = 360;
  var MAX_HEIGHT = 5000;
  var POLL_ID = /^[A-Za-z0-9_-]{1,32}$/;
  var PASSED = ["theme", "lang", "context", "accent", "bg", "fg"];
  var state = window.__pollboxEmbed || (window.__pollboxEmbed = { frames: [], listening: false });

  function onMessage(event) {
    var data = event.data;
    if (!data || typeof data !== "object" || data.type !== MESSAGE) { return; }
    for (var i = 0; i < state.frames.length; i++) {
      var entry = state.frames[i];
      if (entry.frame.contentWindow !== event.source || event.origin !== entry.origin) {
        continue;
      }
      var height = Number(data.height);
      if (isFinite(height) && height > 0) {
        entry.frame.style.height = Math.min(MAX_HEIGHT, Math.ceil(height)) + "px";
      }
      if (typeof data.title === "string" && data.title) {
        entry.frame.title = data.title.slice(0, 300);
      }
      return;
    }
  }

  function embed(script) {
    var source;
    try { source = new URL(script.src, document.baseURI); } catch (e) { return; }
    var poll = script.getAttribute("data-poll") || "";
    if (!POLL_ID.test(poll) || !/\/embed\.js$/.test(source.pathname)) { return; }
    var query = new URLSearchParams();
    if (/^https?:$/.test(location.protocol)) { query.set("origin", location.origin); }
    PASSED.forEach(function (name) {
      var value = script.getAttribute("data-" + name);
      if (value) { query.set(name, value); }
    });
    var base = source.pathname.replace(/\/embed\.js$/, "");
    var frame = document.createElement("iframe");
    frame.src = source.origin + base + "/polls/" + poll + "/widget?" + query.toString();
    frame.title = script.getAttribute("data-title") || "Poll";
    frame.loading = "lazy";
    frame.setAttribute("data-pollbox", poll);
    frame.style.display = "block";
    frame.style.width = "100%";
    frame.style.maxWidth = "100%";
    frame.style.border = "0";
    frame.style.height = INITIAL_HEIGHT + "px";
    frame.style.colorScheme = "normal";
    state.frames.push({ frame: frame, origin: source.origin });
    script.parentNode.insertBefore(frame, script.nextSibling);
  }

  if (!state.listening) {
    window.addEventListener("message", onMessage);
    state.listening = true;
  }
  var scripts = document.querySelectorAll("script[data-poll]");
  for (var i = 0; i < scripts.length; i++) {
    if (scripts[i].getAttribute("data-pollbox-ready")) { continue; }
    scripts[i].setAttribute("data-pollbox-ready", "1");
    embed(scripts[i]);
  }
})();
