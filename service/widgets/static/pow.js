/* Pollbox proof of work: solves the poll's ALTCHA challenge (protocol v1) in the
 * background with ALTCHA's own worker (altcha/sha.js, vendored), as ALTCHA's widget does,
 * so that a vote on a poll that asks for it carries its answer and voting feels instant.
 * Nothing leaves the browser but the answer; no third party is asked.
 * window.PollboxPow.solve(challengeUrl, workerUrl) -> Promise of the `altcha` payload. */
(function () {
  "use strict";

  var WORKERS_MAX = 4;
  var TIMEOUT_MS = 90000;
  var policy = null;

  /* The widget's page requires Trusted Types for scripts: a worker's URL passes through
     a policy that lets only the vendored worker through. */
  function workerUrl(url) {
    if (!window.trustedTypes) { return url; }
    if (!policy) {
      policy = window.trustedTypes.createPolicy("pollbox-pow", {
        createScriptURL: function (candidate) {
          if (candidate !== url) { throw new Error("Not the proof-of-work worker."); }
          return candidate;
        }
      });
    }
    return policy.createScriptURL(url);
  }

  function hex(text) {
    return Array.prototype.map.call(new TextEncoder().encode(text), function (byte) {
      return (byte + 0x100).toString(16).slice(1);
    }).join("");
  }

  /* A v1 challenge as the worker takes it: SHA-256(salt + decimal number) = challenge. */
  function parameters(challenge) {
    return {
      algorithm: challenge.algorithm, cost: 1, keyLength: 32, salt: "",
      nonce: hex(challenge.salt), keyPrefix: challenge.challenge
    };
  }

  function work(challenge, url) {
    var count = Math.max(1, Math.min(WORKERS_MAX, navigator.hardwareConcurrency || 1));
    var workers = [];
    var exhausted = 0;
    var started = performance.now();
    return new Promise(function (resolve, reject) {
      function stop() { workers.forEach(function (worker) { worker.terminate(); }); }
      for (var i = 0; i < count; i++) {
        var worker = new Worker(workerUrl(url));
        workers.push(worker);
        worker.onmessage = function (message) {
          if (!message.data) {  /* this worker gave up (its time ran out) */
            exhausted += 1;
            if (exhausted === count) { stop(); reject(new Error("No solution found.")); }
            return;
          }
          stop();
          if (message.data.error) { reject(new Error(String(message.data.error))); return; }
          resolve(message.data);
        };
        worker.onerror = function (error) { stop(); reject(error); };
        worker.postMessage({
          type: "work", challenge: { parameters: parameters(challenge) },
          counterMode: "string", counterStart: i, counterStep: count, timeout: TIMEOUT_MS
        });
      }
    }).then(function (solution) {
      return btoa(JSON.stringify({
        algorithm: challenge.algorithm, challenge: challenge.challenge,
        number: solution.counter, salt: challenge.salt, signature: challenge.signature,
        took: Math.round(performance.now() - started)
      }));
    });
  }

  function solve(challengeUrl, url) {
    return fetch(challengeUrl, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error("No challenge: " + response.status); }
        return response.json();
      })
      .then(function (challenge) { return work(challenge, url); });
  }

  window.PollboxPow = { solve: solve };
})();
