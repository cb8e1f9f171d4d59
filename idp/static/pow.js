/* Proof-of-work for the activation form (loaded only when the server asks for it, after several failed
   attempts from one address). The server's challenge is a signed token; find a counter such that
   SHA-256(challenge + ":" + counter) starts with `bits` zero bits, put it in the form, then let it be sent.
   Self-hosted: Web Crypto only, no third-party captcha. The server checks everything again. */
(function () {
  "use strict";
  var box = document.getElementById("pow");
  if (!box) { return; }
  var form = box.closest("form");
  var status = document.getElementById("pow-status");
  var solution = form && form.querySelector('input[name="solution"]');
  var button = form && form.querySelector('button[type="submit"]');
  var challenge = box.dataset.challenge || "";
  var bits = parseInt(box.dataset.bits, 10);
  if (!form || !solution || !status || !(bits > 0)) { return; }
  var nojs = document.getElementById("pow-nojs");
  if (nojs) { nojs.hidden = true; }
  function say(text) { status.textContent = text; }
  if (!window.crypto || !window.crypto.subtle || !window.TextEncoder || !window.Promise) {
    say(box.dataset.unsupported);
    return;
  }
  var encoder = new TextEncoder();
  var BATCH = 256;
  var counter = 0;
  var started = Date.now();

  function enoughZeros(buffer) {
    var bytes = new Uint8Array(buffer);
    var left = bits;
    var i = 0;
    while (left >= 8) {
      if (bytes[i] !== 0) { return false; }
      i += 1;
      left -= 8;
    }
    return left === 0 || (bytes[i] >> (8 - left)) === 0;
  }

  function round() {
    var first = counter;
    var jobs = [];
    for (var k = 0; k < BATCH; k += 1) {
      jobs.push(window.crypto.subtle.digest("SHA-256", encoder.encode(challenge + ":" + (first + k))));
    }
    counter += BATCH;
    return Promise.all(jobs).then(function (digests) {
      for (var j = 0; j < digests.length; j += 1) {
        if (enoughZeros(digests[j])) { return first + j; }
      }
      return round();
    });
  }

  if (button) { button.disabled = true; button.setAttribute("aria-disabled", "true"); }
  box.setAttribute("data-state", "working");
  say(box.dataset.working);
  round().then(function (found) {
    solution.value = String(found);
    box.setAttribute("data-state", "done");
    box.setAttribute("data-ms", String(Date.now() - started));
    say(box.dataset.done);
    if (button) { button.disabled = false; button.removeAttribute("aria-disabled"); }
  }, function () {
    box.setAttribute("data-state", "failed");
    say(box.dataset.unsupported);
  });
})();
