#!/usr/bin/python3
"""The app behind each protected path: shows what Apache tells it about the person (REMOTE_USER and the
attributes or claims the module passed on), as a relying app would see it. Run by mod_cgi; the system's
python3, no third-party packages."""
import html
import os

#: mod_auth_cas passes attributes as request headers CAS-<name> (CGI: HTTP_CAS_<NAME>); mod_auth_openidc
#: (OIDCPassClaimsAs environment) as OIDC_CLAIM_<name>.
PREFIXES = ("HTTP_CAS_", "OIDC_CLAIM_")

env = os.environ
attributes = sorted((name, value) for name, value in env.items() if name.startswith(PREFIXES))
rows = "".join(f'<tr data-name="{html.escape(name)}"><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>'
               for name, value in attributes)
logout = env.get("APP_LOGOUT_URL", "")
body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(env.get("APP_NAME", "app"))}</title></head>
<body><main>
<h1 id="app">{html.escape(env.get("APP_NAME", "app"))}</h1>
<p>Logged in as <strong id="user">{html.escape(env.get("REMOTE_USER", ""))}</strong>
(<span id="auth-type">{html.escape(env.get("AUTH_TYPE", ""))}</span>)</p>
<table id="attributes">{rows}</table>
<p><a id="logout" href="{html.escape(logout)}">Log out</a></p>
</main></body></html>
"""
print("Content-Type: text/html; charset=utf-8")
print("Cache-Control: no-store")
print()
print(body, end="")
