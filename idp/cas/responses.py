"""CAS response documents: XML (namespace http://www.yale.edu/tp/cas) and JSON (format=JSON)."""
from __future__ import annotations

import json
import re
from xml.sax.saxutils import escape as _escape

from flask import Response

from idp.cas.protocol import Failure, Success

_NS = 'xmlns:cas="http://www.yale.edu/tp/cas"'
#: What XML 1.0 does not allow in a document at all, escaped or not (§2.2 Char).
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def escape(text: str) -> str:
    """Text for an element: characters XML cannot carry are dropped (a ticket echoed from a request, a value
    stored before the import refused them), the rest escaped. The document must parse in every client."""
    return _escape(_NOT_XML.sub("", text))


def _xml(body: str) -> Response:
    return Response(f"<cas:serviceResponse {_NS}>\n{body}\n</cas:serviceResponse>\n",
                    mimetype="application/xml")


def _json(data: dict) -> Response:
    return Response(json.dumps({"serviceResponse": data}, ensure_ascii=False), mimetype="application/json")


def _values(value) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def validation(result: Success | Failure, fmt: str) -> Response:
    if isinstance(result, Failure):
        if fmt == "JSON":
            return _json({"authenticationFailure": {"code": result.code, "description": result.description}})
        return _xml(f'  <cas:authenticationFailure code="{result.code}">{escape(result.description)}'
                    "</cas:authenticationFailure>")
    if fmt == "JSON":
        success: dict = {"user": result.user}
        if result.attributes:
            success["attributes"] = result.attributes
        if result.pgtiou:
            success["proxyGrantingTicket"] = result.pgtiou
        if result.proxies:
            success["proxies"] = result.proxies
        return _json({"authenticationSuccess": success})
    # Schema order: user, attributes?, proxyGrantingTicket?, proxies?
    parts = [f"    <cas:user>{escape(result.user)}</cas:user>"]
    if result.attributes:
        parts.append("    <cas:attributes>")
        for name, value in result.attributes.items():
            parts.extend(f"      <cas:{name}>{escape(v)}</cas:{name}>" for v in _values(value))
        parts.append("    </cas:attributes>")
    if result.pgtiou:
        parts.append(f"    <cas:proxyGrantingTicket>{result.pgtiou}</cas:proxyGrantingTicket>")
    if result.proxies:
        parts.append("    <cas:proxies>")
        parts.extend(f"      <cas:proxy>{escape(p)}</cas:proxy>" for p in result.proxies)
        parts.append("    </cas:proxies>")
    return _xml("  <cas:authenticationSuccess>\n" + "\n".join(parts) + "\n  </cas:authenticationSuccess>")


def proxy(result: str | Failure, fmt: str) -> Response:
    if isinstance(result, Failure):
        if fmt == "JSON":  # CAS 3.0 §2.7.2 really names it authenticationFailure in JSON
            return _json({"authenticationFailure": {"code": result.code, "description": result.description}})
        return _xml(f'  <cas:proxyFailure code="{result.code}">{escape(result.description)}</cas:proxyFailure>')
    if fmt == "JSON":
        return _json({"proxySuccess": {"proxyTicket": result}})
    return _xml(f"  <cas:proxySuccess>\n    <cas:proxyTicket>{result}</cas:proxyTicket>\n  </cas:proxySuccess>")


def v1(result: Success | Failure) -> Response:
    text = "no\n\n" if isinstance(result, Failure) else f"yes\n{result.user}\n"
    return Response(text, mimetype="text/plain")
