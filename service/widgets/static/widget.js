/* Pollbox widget: progressive enhancement of the plain form.
 * Votes through the JSON API without a reload, shows errors inline, keeps the results
 * live (Server-Sent Events, else polling with If-None-Match), and tells the embedding
 * page (only the origin the server validated) how tall it is. Text goes in as text only. */
(function () {
  "use strict";

  var POLL_INTERVAL_MS = 10000;
  var MAX_FRAME_HEIGHT = 5000;
  var configElement = document.getElementById("pb-config");
  if (!configElement || !window.fetch) { return; }
  var config = JSON.parse(configElement.textContent);
  var texts = config.texts;
  var plurals = window.Intl && Intl.PluralRules ? new Intl.PluralRules(config.lang) : null;
  var numbers = window.Intl ? new Intl.NumberFormat(config.lang) : null;
  var percents = window.Intl ? new Intl.NumberFormat(config.lang, {
    style: "percent", maximumFractionDigits: 2
  }) : null;
  /* A baseline's date as the server writes it: medium, in UTC. */
  var dates = window.Intl ? new Intl.DateTimeFormat(config.lang, {
    dateStyle: "medium", timeZone: "UTC"
  }) : null;

  function byId(id) { return document.getElementById(id); }
  function number(n) { return numbers ? numbers.format(n) : String(n); }
  function percent(p) { return percents ? percents.format(p / 100) : p + " %"; }
  function counted(forms, n) {
    var category = plurals ? plurals.select(n) : (n === 1 ? "one" : "other");
    return (forms[category] || forms.other).replace("{n}", number(n));
  }

  /* Size: only to the parent origin the server accepted for this poll. */
  var parentOrigin = config.origin;
  if (parentOrigin && location.ancestorOrigins && location.ancestorOrigins.length &&
      location.ancestorOrigins[0] !== parentOrigin) {
    parentOrigin = null;
  }
  var lastHeight = 0;
  function postSize() {
    if (!parentOrigin || window.parent === window) { return; }
    var height = Math.min(MAX_FRAME_HEIGHT,
      Math.ceil(document.documentElement.getBoundingClientRect().height));
    if (height === lastHeight) { return; }
    lastHeight = height;
    window.parent.postMessage(
      { type: "pollbox:resize", poll: config.pollId, height: height, title: config.title },
      parentOrigin
    );
  }
  if (window.ResizeObserver) {
    new ResizeObserver(postSize).observe(document.documentElement);
  } else {
    window.addEventListener("resize", postSize);
  }
  postSize();

  /* Results */
  var section = byId("pb-results");
  function renderResults(tallies) {
    if (!section || !tallies || !tallies.options) { return; }
    var list = byId("pb-bars");
    var items = [];
    tallies.options.forEach(function (option) {
      var item = document.createElement("li");
      item.className = "pb-bar";
      item.setAttribute("data-option", String(option.id));
      var line = document.createElement("div");
      line.className = "pb-bar-text";
      var label = document.createElement("span");
      label.className = "pb-bar-label";
      label.textContent = option.label;
      line.appendChild(label);
      item.appendChild(line);
      if (option.votes !== null && option.votes !== undefined) {
        var value = document.createElement("span");
        value.className = "pb-bar-value";
        value.textContent = percent(option.percent) + " (" + counted(texts.votes, option.votes) + ")";
        line.appendChild(document.createTextNode(" "));
        line.appendChild(value);
        var track = document.createElement("div");
        track.className = "pb-track";
        track.setAttribute("aria-hidden", "true");
        var fill = document.createElement("div");
        fill.className = "pb-fill";
        fill.style.width = Math.max(0, Math.min(100, option.percent)) + "%";
        track.appendChild(fill);
        item.appendChild(track);
      }
      items.push(item);
    });
    list.replaceChildren.apply(list, items);
    byId("pb-suppressed").hidden = !tallies.suppressed;
    var other = byId("pb-other");
    if (config.allowOther && tallies.other_votes !== null && tallies.other_votes !== undefined) {
      other.textContent = texts.other + ": " + number(tallies.other_votes);
      other.hidden = false;
    } else {
      other.hidden = true;
    }
    renderStatistic(tallies);
    byId("pb-total").textContent = counted(texts.total, tallies.total_votes);
    renderBaseline(tallies.baseline);
    renderRunoff(tallies);
    section.hidden = false;
  }

  /* A ranked poll: the bars count first preferences; the winner is the runoff's. */
  function renderRunoff(tallies) {
    var note = byId("pb-first-preferences");
    var winner = byId("pb-winner");
    if (!note || !winner) { return; }
    var runoff = tallies.irv;
    note.hidden = !runoff;
    var found = null;
    if (runoff && runoff.winner !== null) {
      tallies.options.forEach(function (option) {
        if (option.id === runoff.winner) { found = option.label; }
      });
    }
    winner.textContent = found === null ? "" : texts.winner.replace("{label}", found);
    winner.hidden = found === null;
  }

  /* A rating's mean and median, or an NPS poll's score. */
  function renderStatistic(tallies) {
    var line = byId("pb-stat");
    if (!line) { return; }
    var text = null;
    if (tallies.rating && tallies.rating.mean !== null) {
      text = texts.rating.replace("{mean}", number(tallies.rating.mean))
        .replace("{median}", number(tallies.rating.median));
    } else if (tallies.nps && tallies.nps.score !== null) {
      text = texts.nps.replace("{score}", number(tallies.nps.score));
    }
    line.textContent = text || "";
    line.hidden = !text;
  }

  /* "includes N votes before <date>": the total counts votes from before Pollbox. */
  function renderBaseline(baseline) {
    var note = byId("pb-baseline");
    if (!note) { return; }
    if (!baseline) { note.hidden = true; return; }
    var day = new Date(baseline.as_of);
    var shown = dates && !isNaN(day) ? dates.format(day) : String(baseline.as_of).slice(0, 10);
    note.textContent = counted(texts.baseline, baseline.total_votes).replace("{date}", shown);
    note.hidden = false;
  }

  /* Live updates */
  var live = null;
  var etag = null;
  function poll() {
    var headers = {};
    if (etag) { headers["If-None-Match"] = etag; }
    fetch(config.talliesUrl, { headers: headers, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 200) {
          etag = response.headers.get("ETag");
          return response.json().then(renderResults);
        }
        return null;
      })
      .catch(function () { return null; })
      .then(function () { live = window.setTimeout(poll, POLL_INTERVAL_MS); });
  }
  function startLive() {
    if (live) { return; }
    if (window.EventSource) {
      var source = new EventSource(config.streamUrl);
      live = source;
      source.addEventListener("tallies", function (event) {
        renderResults(JSON.parse(event.data));
      });
      source.onerror = function () {
        if (source.readyState === EventSource.CLOSED) {
          live = null;
          poll();
        }
      };
    } else {
      live = true;
      poll();
    }
  }
  if (config.live) { startLive(); }

  /* Voting */
  var form = byId("pb-form");
  if (!form) { return; }
  var errorBox = byId("pb-error");
  var statusBox = byId("pb-status");
  var submit = byId("pb-submit");

  function showError(code) {
    errorBox.textContent = texts.errors[code] || texts.errors.invalid;
  }

  /* The Idempotency-Key: a version 4 UUID from the browser's cryptographic generator.
     randomUUID needs a secure context; getRandomValues does not, so a widget served on
     plain http still gets an unguessable key (never Math.random's). */
  function randomKey() {
    if (crypto.randomUUID) { return crypto.randomUUID(); }
    var bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;  /* version 4 */
    bytes[8] = (bytes[8] & 0x3f) | 0x80;  /* RFC 4122 variant */
    var hex = Array.prototype.map.call(bytes, function (byte) {
      return (byte + 0x100).toString(16).slice(1);
    }).join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20),
            hex.slice(20)].join("-");
  }

  /* Changing one's vote: with the receipt of the vote this browser sent (kept in this
     origin's storage, so only this browser has it) through PUT /api/v1/receipts/<receipt>;
     without one, the form posts to the widget, which changes this browser's own vote. */
  var RECEIPT_KEY = "pollbox:receipt:" + config.pollId;
  var changing = Boolean(config.changing);
  var receipt = null;
  try { receipt = window.localStorage.getItem(RECEIPT_KEY); } catch (e) { receipt = null; }
  function keepReceipt(value) {
    receipt = value;
    try { window.localStorage.setItem(RECEIPT_KEY, value); } catch (e) { /* kept in memory */ }
  }
  function forgetReceipt() {
    receipt = null;
    try { window.localStorage.removeItem(RECEIPT_KEY); } catch (e) { /* nothing kept */ }
  }
  var changeButton = null;
  function offerChange() {
    if (!config.allowChange || !receipt) { return; }
    if (!changeButton) {
      changeButton = document.createElement("button");
      changeButton.type = "button";
      changeButton.id = "pb-change-js";
      changeButton.textContent = texts.change;
      changeButton.addEventListener("click", function () {
        changing = true;
        changeButton.hidden = true;
        submit.textContent = texts.change;
        submit.disabled = false;
        statusBox.textContent = "";
        form.hidden = false;
        var first = form.querySelector('input[name="choice"]');
        if (first) { first.focus(); }
      });
      statusBox.parentNode.insertBefore(changeButton, statusBox.nextSibling);
    }
    changeButton.hidden = false;
  }

  function sendChange(body) {
    fetch(config.receiptsUrl + encodeURIComponent(receipt), {
      method: "PUT",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (response.status === 200) {
          form.hidden = true;
          statusBox.textContent = texts.changed;
          if (data.tallies) {
            renderResults(data.tallies);
            startLive();
          }
          statusBox.setAttribute("tabindex", "-1");
          statusBox.focus();
          offerChange();
          return;
        }
        if (response.status === 404) {  /* the receipt is gone: the form decides */
          forgetReceipt();
          if (config.changing) { form.submit(); return; }
        }
        var code = data.code;
        if (code === "validation_error") { code = "invalid"; }
        failed(code);
      });
    }).catch(function () { failed("network"); });
  }

  /* A ranked poll: the visitor ticks the options to rank (partial rankings are fine) and
     orders them with up and down buttons (keyboard or pointer); the ticked ones, in list
     order, are the ranking. Focus stays on the moved option's button, and the live
     region says where it went. The selects of the form without JavaScript are removed;
     the option's label names its tick box instead. */
  var ranking = config.ranked ? byId("pb-ranking") : null;
  var rankLive = byId("pb-rank-live");
  function rankItems() { return Array.prototype.slice.call(ranking.children); }
  function labelOf(item) { return item.querySelector(".pb-rank-label").textContent; }
  function renumber() {
    var rank = 0;
    rankItems().forEach(function (item, index) {
      var ranked = item.querySelector(".pb-include").checked;
      if (ranked) { rank += 1; }
      item.querySelector(".pb-rank-pos").textContent = ranked ? number(rank) : "–";
      item.querySelector(".pb-up").disabled = index === 0;
      item.querySelector(".pb-down").disabled = index === rankItems().length - 1;
    });
  }
  function move(item, step, button) {
    var items = rankItems();
    var index = items.indexOf(item);
    var target = index + step;
    if (target < 0 || target >= items.length) { return; }
    if (step < 0) { ranking.insertBefore(item, items[target]); }
    else { ranking.insertBefore(item, items[target].nextSibling); }
    renumber();
    /* Focus follows the item; at an edge its other button takes it (this one is off). */
    var keep = button.disabled ? item.querySelector(step < 0 ? ".pb-down" : ".pb-up") : button;
    keep.focus();
    rankLive.textContent = texts.position.replace("{label}", labelOf(item))
      .replace("{position}", number(target + 1)).replace("{count}", number(items.length));
  }
  function rankButton(item, className, text, labelText, step) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = className;
    button.textContent = text;
    button.setAttribute("aria-label", labelText.replace("{label}", labelOf(item)));
    button.addEventListener("click", function () { move(item, step, button); });
    return button;
  }
  if (ranking) {
    rankItems().forEach(function (item) {
      item.querySelector("select").remove();
      var include = document.createElement("input");
      include.type = "checkbox";
      include.className = "pb-include";
      include.id = "pb-i-" + item.getAttribute("data-option");
      include.addEventListener("change", renumber);
      item.querySelector(".pb-rank-label").setAttribute("for", include.id);
      item.insertBefore(include, item.firstChild);
      var position = document.createElement("span");
      position.className = "pb-rank-pos";
      position.setAttribute("aria-hidden", "true");
      item.insertBefore(position, item.firstChild);
      item.appendChild(rankButton(item, "pb-up", texts.moveUp, texts.moveUpLabel, -1));
      item.appendChild(rankButton(item, "pb-down", texts.moveDown, texts.moveDownLabel, 1));
    });
    renumber();
  }

  var idempotencyKey = null;
  form.addEventListener("submit", function (event) {
    if (changing && !receipt) { return; }  /* the widget changes this browser's vote */
    event.preventDefault();
    errorBox.textContent = "";
    var choices = [];
    form.querySelectorAll('input[name="choice"]:checked').forEach(function (input) {
      choices.push(parseInt(input.value, 10));
    });
    if (ranking) {
      choices = rankItems().filter(function (item) {
        return item.querySelector(".pb-include").checked;
      }).map(function (item) { return parseInt(item.getAttribute("data-option"), 10); });
    }
    var otherInput = form.querySelector('input[name="other"]');
    var commentInput = form.querySelector('textarea[name="comment"]');
    var other = otherInput ? otherInput.value.trim() : "";
    var comment = commentInput ? commentInput.value.trim() : "";
    if (!choices.length && !other) { showError("choose_one"); return; }
    if (choices.length > config.maxChoices) { showError("too_many"); return; }
    var body = { choices: choices };
    if (other) { body.other = other; }
    if (comment) { body.comment = comment; }
    if (changing) {
      submit.disabled = true;
      statusBox.textContent = texts.sending;
      sendChange(body);
      return;
    }
    if (config.context) { body.context = config.context; }
    idempotencyKey = idempotencyKey || randomKey();
    submit.disabled = true;
    statusBox.textContent = texts.sending;
    send(body, 0);
  });

  /* The poll's proof of work, when it asks for one: solved ahead while the visitor reads,
     a fresh solution for each attempt (each is used once). */
  var needsWork = Boolean(config.challenge && window.PollboxPow);
  var solving = null;
  function solveAhead() {
    if (!solving && window.PollboxPow) {
      solving = window.PollboxPow.solve(config.challengeUrl, config.powWorkerUrl);
    }
    return solving;
  }
  function takeSolution() {
    var taken = solveAhead();
    solving = null;
    return taken;
  }
  if (needsWork) { solveAhead(); }
  var CHALLENGE_RETRIES_MAX = 2;

  /* Answers that mean "not yet", not "no": an earlier attempt with this key or by this
     voter is still in flight. Sent again with the same key after Retry-After, a few
     times, so the vote counts once whichever attempt wins. */
  var RETRY_CODES = { vote_pending: true, idempotency_key_in_use: true };
  var RETRIES_MAX = 5;
  var RETRY_AFTER_MAX_SECONDS = 10;

  function retryDelayMs(response) {
    var seconds = parseInt(response.headers.get("Retry-After"), 10);
    if (!(seconds >= 0)) { seconds = 1; }
    return Math.min(seconds, RETRY_AFTER_MAX_SECONDS) * 1000;
  }

  function send(body, retries, challenged) {
    if (!needsWork) { post(body, retries, challenged || 0); return; }
    takeSolution().then(function (solution) {
      body.altcha = solution;
      post(body, retries, challenged || 0);
    }, function () { failed("network"); });
  }

  function post(body, retries, challenged) {
    fetch(config.voteUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Idempotency-Key": idempotencyKey },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (response.status === 201) {
          form.hidden = true;
          if (config.allowChange && data.vote && data.vote.receipt) {
            keepReceipt(data.vote.receipt);
          }
          if (data.tallies) {
            statusBox.textContent = texts.thanks;
            renderResults(data.tallies);
            startLive();
          } else {
            statusBox.textContent = config.hiddenText;
          }
          statusBox.setAttribute("tabindex", "-1");
          statusBox.focus();
          offerChange();
          return;
        }
        if (response.status === 409 && RETRY_CODES[data.code] && retries < RETRIES_MAX) {
          window.setTimeout(function () { send(body, retries + 1, challenged); },
                            retryDelayMs(response));
          return;
        }
        /* The poll asks for a proof of work now (switched on since this page was made),
           or the solution was refused: solve a fresh one and send again, same key. */
        if (data.code === "challenge_required" && window.PollboxPow &&
            challenged < CHALLENGE_RETRIES_MAX) {
          needsWork = true;
          send(body, retries, challenged + 1);
          return;
        }
        /* The poll filled up while the form was open: show it as it is now (closed,
           "full", with its results where the poll shows them). */
        if (data.code === "poll_full") { window.location.reload(); return; }
        if (!RETRY_CODES[data.code]) { idempotencyKey = null; }  /* pending: same key again */
        var code = data.code;
        if (code === "validation_error") { code = "invalid"; }
        failed(code);
      });
    }).catch(function () { failed("network"); });
  }

  function failed(code) {
    statusBox.textContent = "";
    submit.disabled = false;
    showError(code);
  }
})();
