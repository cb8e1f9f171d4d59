// Progressive enhancement only: every page works without it.
document.addEventListener("DOMContentLoaded", function () {
  // Show/hide password.
  document.querySelectorAll("button.toggle-pw").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var input = document.getElementById(btn.dataset.target);
      var show = input.type === "password";
      input.type = show ? "text" : "password";
      btn.textContent = show ? btn.dataset.hide : btn.dataset.show;
      btn.setAttribute("aria-pressed", show ? "true" : "false");
      input.focus();
    });
  });
  // Caps Lock indicator.
  document.querySelectorAll(".field.password input").forEach(function (input) {
    var note = document.getElementById(input.id + "-caps");
    function check(ev) {
      if (note && ev.getModifierState) { note.hidden = !ev.getModifierState("CapsLock"); }
    }
    input.addEventListener("keydown", check);
    input.addEventListener("keyup", check);
    input.addEventListener("blur", function () { if (note) { note.hidden = true; } });
  });
  // Live password feedback: the server's own verdict, never a guess made here.
  document.querySelectorAll("input[data-live-check]").forEach(liveCheck);
  // CAS method=POST: hand the ticket to the app without a click.
  var post = document.querySelector("form[data-autosubmit]");
  if (post) { post.submit(); }
  var alertBox = document.getElementById("form-errors");
  if (alertBox && !document.querySelector("[autofocus]")) { alertBox.focus(); }
});

// --- live password checklist ----------------------------------------------------------------------
//
// For an input with data-live-check="<url>": ~250 ms after the person stops typing, POST {"password": ...}
// to that URL (the server's rule engine, rate limited) and show its answer: each rule of the checklist
// (<li data-rule="code"> inside the list named by data-rules) ticked or not, the strength meter and the
// server's strength word, and a short polite announcement. Nothing is judged in the browser: a rule is
// shown met only when the server said so for exactly what is in the field now. When no current answer
// can be had (429, network error, an answer for older input) the list falls back to its unjudged state.

var LIVE_DELAY_MS = 250;
// zxcvbn's scale as the server labels it: 3 and 4 are "strong" and "very strong". A password the server
// refuses never shows those words or a meter that high, whatever its score.
var STRONG_SCORE = 3;
var MARKS = { ok: "\u2713", fail: "\u2717", pending: "\u2022" };

function csrfToken(form) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta && meta.content) { return meta.content; }
  var field = form && form.querySelector('input[name="csrf_token"]');
  return field ? field.value : "";
}

function setRuleState(list, li, state) {
  li.dataset.state = state;
  var mark = li.querySelector(".mark");
  if (mark) { mark.textContent = MARKS[state]; }
  var words = li.querySelector(".rule-state");
  if (words) { words.textContent = "(" + (list.dataset["text" + state.charAt(0).toUpperCase() + state.slice(1)] || state) + ")"; }
}

function ruleItems(list) {
  // A copy: the live HTMLCollection shifts when an item is removed while walking it.
  return Array.prototype.slice.call(list.querySelectorAll("li[data-rule]"));
}

function ruleItem(list, code) {
  var found = null;
  ruleItems(list).forEach(function (li) { if (li.dataset.rule === code) { found = li; } });
  if (found) { return found; }
  // A rule the page was not rendered with (e.g. "too long", which replaces the others): same markup.
  var li = document.createElement("li");
  li.dataset.rule = code;
  var mark = document.createElement("span");
  mark.className = "mark";
  mark.setAttribute("aria-hidden", "true");
  var label = document.createElement("span");
  label.className = "rule-label";
  var words = document.createElement("span");
  words.className = "visually-hidden rule-state";
  li.appendChild(mark);
  li.appendChild(document.createTextNode(" "));
  li.appendChild(label);
  li.appendChild(document.createTextNode(" "));
  li.appendChild(words);
  list.appendChild(li);
  return li;
}

function liveCheck(input) {
  var url = input.dataset.liveCheck;
  var list = document.getElementById(input.dataset.rules || "password-rules");
  var box = document.getElementById(input.id + "-strength");
  var meter = box && box.querySelector("meter");
  var value = box && box.querySelector(".strength-value");
  var paused = document.getElementById(input.id + "-paused");
  var live = document.getElementById(input.id + "-live");
  if (!url || !box || !window.fetch) { return; }
  var timer = null;
  var seq = 0;            // the latest request; answers to older ones are dropped
  var resumeAt = 0;       // after a 429: no request before this time
  var announced = "";

  function announce(text) {
    if (live && text !== announced) { live.textContent = text; announced = text; }
  }

  function unjudged() {
    // Back to the server-rendered look: labels without a verdict. Nothing is claimed for this input.
    if (list) {
      list.removeAttribute("aria-busy");
      ruleItems(list).forEach(function (li) {
        if (li.dataset.dynamic) { li.remove(); return; }
        li.hidden = false;
        setRuleState(list, li, "pending");
      });
    }
    box.hidden = true;
    box.dataset.state = "pending";
  }

  function show(verdict) {
    if (paused) { paused.hidden = true; }
    var seen = {};
    var failing = [];
    if (list) {
      list.removeAttribute("aria-busy");
      verdict.rules.forEach(function (rule) {
        var li = ruleItem(list, rule.code);
        if (!li.querySelector(".rule-label").textContent.trim()) { li.dataset.dynamic = "1"; }
        li.querySelector(".rule-label").textContent = rule.label;
        li.hidden = false;
        // ok === null: the server has not judged this rule yet (it runs only once the others pass)
        setRuleState(list, li, rule.ok === null ? "pending" : (rule.ok ? "ok" : "fail"));
        seen[rule.code] = true;
        if (rule.ok === false) { failing.push(rule.label); }
      });
      // Rules the server did not judge this time (an over-long password stops at its length) are not shown
      // as met or failed.
      ruleItems(list).forEach(function (li) {
        if (!seen[li.dataset.rule]) { setRuleState(list, li, "pending"); li.hidden = true; }
      });
    }
    var ok = verdict.ok === true;
    var score = Math.max(0, Math.min(4, Number(verdict.score) || 0));
    var strong = score >= STRONG_SCORE;
    meter.value = ok ? score : Math.min(score, STRONG_SCORE - 1);
    var worded = ok || !strong;  // else the server's word would be "strong" for a refused password
    var text = worded ? String(verdict.strength) : box.dataset.notYet;
    var label = box.querySelector(".strength-label");
    if (label) { label.hidden = !worded; }
    value.textContent = text;
    meter.setAttribute("aria-valuetext", text);
    box.dataset.state = ok ? "ok" : "fail";
    box.hidden = false;
    var total = verdict.rules.length;
    var met = total - failing.length;
    var summary = ok ? box.dataset.allMet : box.dataset.count.replace("{met}", met).replace("{total}", total);
    if (failing.length) { summary += " " + box.dataset.notMet + " " + failing.join("; ") + "."; }
    announce(summary + " " + (worded && label ? label.textContent + " " + text : ""));
  }

  function pause(response) {
    var wait = parseInt(response.headers.get("Retry-After") || "", 10);
    wait = isNaN(wait) ? 10 : Math.max(2, Math.min(60, wait));
    resumeAt = Date.now() + wait * 1000;
    unjudged();
    if (paused) { paused.hidden = false; announce(paused.textContent.trim()); }
    clearTimeout(timer);
    timer = setTimeout(send, wait * 1000);
  }

  function send() {
    var mine = ++seq;
    var password = input.value;
    if (!password) { unjudged(); return; }
    if (Date.now() < resumeAt) {
      clearTimeout(timer);
      timer = setTimeout(send, resumeAt - Date.now());
      return;
    }
    fetch(url, {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrfToken(input.form) },
      body: JSON.stringify({ password: password })
    }).then(function (response) {
      if (mine !== seq) { return null; }
      if (response.status === 429) { pause(response); return null; }
      if (!response.ok) { unjudged(); return null; }
      return response.json().then(function (verdict) {
        if (mine === seq && input.value === password && verdict && verdict.rules) { show(verdict); }
      });
    }).catch(function () {
      if (mine === seq) { unjudged(); }
    });
  }

  input.addEventListener("input", function () {
    // Until the answer for the new input arrives, what is shown is about the old one: mark it stale.
    seq++;
    if (list) { list.setAttribute("aria-busy", "true"); }
    box.dataset.state = "checking";
    clearTimeout(timer);
    timer = setTimeout(send, LIVE_DELAY_MS);
  });
  if (input.value) { timer = setTimeout(send, LIVE_DELAY_MS); }
}
