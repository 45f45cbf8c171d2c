/* Pollbox console: copy buttons and live results. The pages work without it. */
(function () {
  "use strict";

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain http off localhost has no Clipboard API: fall back to a selection copy.
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "pb-skip";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      if (ok) { resolve(); } else { reject(new Error("copy refused")); }
    });
  }

  function setupCopyButtons() {
    var buttons = document.querySelectorAll("button.pb-copy[data-copy-target]");
    Array.prototype.forEach.call(buttons, function (button) {
      button.hidden = false;  // without JavaScript the snippets are plain selectable text
      button.addEventListener("click", function () {
        var target = document.querySelector(button.getAttribute("data-copy-target"));
        var status = button.parentNode.querySelector(".pb-copy-status");
        if (!target) { return; }
        copyText(target.textContent).then(function () {
          if (status) { status.textContent = "Copied"; }
          button.setAttribute("data-copied", "true");
        }, function () {
          // Select the text so that Ctrl+C / Cmd+C copies it.
          var range = document.createRange();
          range.selectNodeContents(target);
          var selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
          if (status) { status.textContent = "Press Ctrl+C to copy"; }
        });
      });
    });
  }

  function formatPercent(value) {
    return (value === null || value === undefined) ? "–" : Number(value).toFixed(2);
  }

  /* A rating's mean and median or an NPS poll's score: each number in its own span. */
  function renderStatistic(block) {
    if (!block) { return; }
    ["mean", "median", "score", "promoters", "passives", "detractors"].forEach(function (name) {
      var span = document.getElementById("stat-" + name);
      if (span && name in block) {
        span.textContent = block[name] === null ? "–" : String(block[name]);
      }
    });
    var ci = document.getElementById("stat-ci");
    if (ci) { ci.textContent = block.ci95 ? block.ci95[0] + "–" + block.ci95[1] : "–"; }
  }

  function render(root, tallies) {
    if (tallies.status === "deleted") { return; }
    var total = document.getElementById("total-votes");
    if (total) { total.textContent = String(tallies.total_votes); }
    var other = document.getElementById("other-votes");
    if (other && tallies.other_votes !== null) { other.textContent = String(tallies.other_votes); }
    var updated = document.getElementById("results-updated");
    if (updated) { updated.textContent = tallies.updated_at; }
    var note = document.getElementById("baseline-note");
    if (note) {
      note.hidden = !tallies.baseline;
      if (tallies.baseline) {
        document.getElementById("baseline-total").textContent = String(tallies.baseline.total_votes);
        document.getElementById("baseline-source").textContent = tallies.baseline.source;
      }
    }
    renderStatistic(tallies.rating || tallies.nps);
    (tallies.options || []).forEach(function (option) {
      var row = root.querySelector('[data-option-id="' + option.id + '"]');
      if (!row) { return; }
      row.querySelector(".pb-bar-label").textContent = option.label;
      row.querySelector(".pb-votes").textContent = String(option.votes);
      row.querySelector(".pb-percent").textContent = formatPercent(option.percent);
      var ci = row.querySelector(".pb-ci");
      if (ci) {
        ci.textContent = option.ci95 ? "(95 % CI " + option.ci95[0].toFixed(1) + "–" +
          option.ci95[1].toFixed(1) + ")" : "";
      }
      var meter = row.querySelector("progress");
      if (meter) { meter.value = option.percent || 0; }
    });
  }

  function setupLiveResults() {
    var root = document.querySelector("[data-stream-url]");
    if (!root || !window.EventSource) { return; }
    var status = document.getElementById("live-status");
    var source = new EventSource(root.getAttribute("data-stream-url"));
    source.addEventListener("tallies", function (event) {
      render(root, JSON.parse(event.data));
      root.setAttribute("data-live", "true");
      if (status) { status.textContent = "· live"; }
    });
    source.onerror = function () {
      if (status) { status.textContent = source.readyState === EventSource.CLOSED ?
        "· not live (refresh the page)" : "· reconnecting…"; }
    };
  }

  function start() {
    setupCopyButtons();
    setupLiveResults();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
