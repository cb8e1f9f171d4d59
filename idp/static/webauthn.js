// Security keys (WebAuthn) on the /mfa pages. Progressive enhancement: the pages work without it (codes).
//
// A button with data-webauthn="register" or "authenticate" POSTs to its data-options-url (JSON options
// from the server, CSRF token in the X-CSRFToken header), asks the browser for the credential, POSTs the
// answer to its data-finish-url, and follows the server's {"redirect": url}. Errors go to the element
// named by data-error. No inline handlers: the CSP allows only this file and the page's nonce.
(function () {
  "use strict";

  function supported() {
    return !!(window.PublicKeyCredential && navigator.credentials && window.fetch);
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function fromB64url(value) {
    var b64 = value.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var bin = atob(b64);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
    return bytes.buffer;
  }

  function toB64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function creationOptions(json) {
    if (PublicKeyCredential.parseCreationOptionsFromJSON) {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    var o = Object.assign({}, json);
    o.challenge = fromB64url(json.challenge);
    o.user = Object.assign({}, json.user, { id: fromB64url(json.user.id) });
    o.excludeCredentials = (json.excludeCredentials || []).map(function (c) {
      return Object.assign({}, c, { id: fromB64url(c.id) });
    });
    return o;
  }

  function requestOptions(json) {
    if (PublicKeyCredential.parseRequestOptionsFromJSON) {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    var o = Object.assign({}, json);
    o.challenge = fromB64url(json.challenge);
    o.allowCredentials = (json.allowCredentials || []).map(function (c) {
      return Object.assign({}, c, { id: fromB64url(c.id) });
    });
    return o;
  }

  function credentialJSON(cred) {
    if (typeof cred.toJSON === "function") {
      try { return cred.toJSON(); } catch (e) { /* fall through: some browsers throw for extensions */ }
    }
    var r = cred.response;
    var out = { id: cred.id, rawId: toB64url(cred.rawId), type: cred.type,
                clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
                authenticatorAttachment: cred.authenticatorAttachment || undefined, response: {} };
    out.response.clientDataJSON = toB64url(r.clientDataJSON);
    if (r.attestationObject) {
      out.response.attestationObject = toB64url(r.attestationObject);
      out.response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      out.response.authenticatorData = toB64url(r.authenticatorData);
      out.response.signature = toB64url(r.signature);
      if (r.userHandle) { out.response.userHandle = toB64url(r.userHandle); }
    }
    return out;
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body || {})
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (data) {
        if (!resp.ok) { throw new Error(data.error || resp.statusText); }
        return data;
      });
    });
  }

  function run(button) {
    var kind = button.dataset.webauthn;
    var errorBox = document.getElementById(button.dataset.error || "");
    var nameInput = document.getElementById(button.dataset.nameInput || "");
    if (errorBox) { errorBox.hidden = true; errorBox.textContent = ""; }
    button.disabled = true;
    post(button.dataset.optionsUrl).then(function (options) {
      return kind === "register"
        ? navigator.credentials.create({ publicKey: creationOptions(options) })
        : navigator.credentials.get({ publicKey: requestOptions(options) });
    }).then(function (cred) {
      var body = { credential: credentialJSON(cred) };
      if (nameInput) { body.name = nameInput.value; }
      return post(button.dataset.finishUrl, body);
    }).then(function (data) {
      window.location.assign(data.redirect || "/");
    }).catch(function (err) {
      button.disabled = false;
      if (errorBox) {
        errorBox.textContent = (err && err.name === "NotAllowedError")
          ? (button.dataset.cancelled || err.message) : (err && err.message) || String(err);
        errorBox.hidden = false;
        errorBox.focus && errorBox.focus();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!supported()) { return; }
    document.querySelectorAll(".webauthn-only").forEach(function (el) { el.hidden = false; });
    document.querySelectorAll(".webauthn-missing").forEach(function (el) { el.hidden = true; });
    document.querySelectorAll("[data-webauthn]").forEach(function (button) {
      button.addEventListener("click", function () { run(button); });
    });
  });
})();
