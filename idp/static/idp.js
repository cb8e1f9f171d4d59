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
  // CAS method=POST: hand the ticket to the app without a click.
  var post = document.querySelector("form[data-autosubmit]");
  if (post) { post.submit(); }
  var alertBox = document.getElementById("form-errors");
  if (alertBox && !document.querySelector("[autofocus]")) { alertBox.focus(); }
});
