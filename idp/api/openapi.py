"""The OpenAPI 3.1 document of the admin API — its one source of truth, served at /api/v1/openapi.json.

Written as Python data so that the shapes repeated on every route (the error answers, the reason every
action needs, the audit event every action returns) are written once. tests/api/test_openapi.py checks that
every route of the blueprint is described here and nothing else is, validates the document with
openapi-spec-validator, and checks real answers against these schemas.
"""
from __future__ import annotations

import copy
from typing import Any

VERSION = "1.0.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    out["type"] = [schema["type"], "null"]
    return out


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}
TIME = {"type": "string", "format": "date-time", "description": "UTC, ISO 8601 with Z"}
N_STRING = _nullable(STRING)
N_TIME = _nullable(TIME)


def _object(properties: dict[str, Any], required: list[str] | None = None, *, description: str | None = None,
            closed: bool = True) -> dict[str, Any]:
    """An object schema; `required` defaults to every property (the API always sends every key)."""
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "required": list(properties) if required is None else required}
    if closed:
        schema["additionalProperties"] = False
    if description:
        schema["description"] = description
    return schema


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


STATUS_CODES = ["active", "temporary_password", "locked", "left", "left_grace", "merged", "no_password",
                "password_expired"]
IDENTIFIER_KINDS = ["university_email", "private_email", "alias"]

SCHEMAS: dict[str, Any] = {
    "Error": _object({
        "error": {"type": "string", "description": "A stable machine code, e.g. invalid_token, reason_required, "
                                                   "not_locked, taken, password_rejected"},
        "message": {"type": "string", "description": "What went wrong, for people (Accept-Language: pl or en)"},
        "field": {"type": "string", "description": "The request field at fault, when there is one"},
        "reference": {"type": "string", "description": "Audit reference code of a crash (E123)"},
        "violations": _array(_object({"code": STRING, "message": STRING})),
    }, ["error", "message"], description="Every error answer of the API, whatever the status."),
    "AuditEvent": _object({
        "id": INTEGER, "reference": {"type": "string", "examples": ["E1234"]}, "at": TIME,
        "action": {"type": "string", "examples": ["helpdesk.unlock", "login.failed"]},
        "actor": {"type": "string", "description": "self, cli, a staff person's address, a service name"},
        "account_id": _nullable(INTEGER), "reason": N_STRING,
        "client_ip": N_STRING,
        "data": {"type": ["object", "null"], "description": "Details; helpdesk actions carry why, via, before, "
                                                            "after"},
    }, ["id", "reference", "at", "action", "actor", "account_id", "reason", "client_ip", "data"],
        description="One audit event, as `idp audit export` writes it.", closed=False),
    "AuditEventWithWords": {"allOf": [_ref("AuditEvent"), _object({"reason_words": N_STRING}, closed=False)]},
    "PersonRef": _object({"album": STRING, "name": STRING}),
    "PersonSummary": _object({
        "album": STRING, "name": STRING, "first_name": STRING, "last_name": STRING,
        "role": {"type": "string", "enum": ["student", "teacher", "staff"]},
        "status": {"type": "string", "description": "The stored status: active, left or merged"},
        "university_email": N_STRING, "merged_into": {"type": "boolean", "description": "Merged into another "
                                                                                      "account"},
    }),
    "SearchResult": _object({
        "kind": {"type": "string", "enum": ["album", "identifier", "name", "pesel", "reference", "empty"],
                 "description": "How the query was understood"},
        "total": INTEGER, "page": INTEGER, "per_page": INTEGER, "pages": INTEGER,
        "items": _array(_ref("PersonSummary")),
        "event": {"anyOf": [_ref("AuditEventWithWords"), {"type": "null"}],
                  "description": "The event a reference code named"},
    }),
    "Identifier": _object({
        "id": INTEGER, "kind": {"type": "string", "enum": IDENTIFIER_KINDS}, "value": STRING,
        "logs_in": {"type": "boolean", "description": "The policy lets this kind of identifier log in"},
        "source": {"type": "string", "enum": ["sis", "helpdesk", "merge"],
                   "description": "sis: the import owns it (removed when the export stops listing it); helpdesk "
                                  "or merge: kept by imports"},
    }),
    "Identity": _object({
        "id": INTEGER, "provider": STRING, "provider_label": STRING, "subject": STRING, "email": N_STRING,
        "linked_by": {"type": "string", "enum": ["password", "mail", "import", "helpdesk"]},
        "linked_at": TIME, "last_login_at": N_TIME,
    }, description="A linked upstream identity."),
    "PendingLink": _object({
        "id": INTEGER, "kind": {"type": "string", "enum": ["exists", "unknown"]}, "provider": STRING,
        "provider_label": STRING, "subject": STRING, "email": N_STRING, "name": N_STRING,
        "account": {"anyOf": [_ref("PersonRef"), {"type": "null"}]},
        "created_at": TIME, "expires_at": TIME, "resolution": N_STRING, "resolved_at": N_TIME,
    }, description="An upstream login waiting for a link."),
    "Session": _object({
        "sid": {"type": "string", "description": "Public session id (what sessions/end takes)"},
        "auth_time": TIME, "last_used_at": TIME, "expires_at": TIME, "client_ip": N_STRING,
        "apps": _array(_object({"service": STRING, "tickets": INTEGER, "logout_status": N_STRING})),
    }, description="A live single-sign-on session and the apps it logged into."),
    "Person": _object({
        "album": STRING, "subject": {"type": "string", "description": "OIDC sub"}, "name": STRING,
        "first_name": STRING, "last_name": STRING, "role": STRING,
        "roles": _array({"type": "string", "enum": ["helpdesk", "admin"]}),
        "status": _array({"type": "string", "enum": STATUS_CODES}),
        "locked_until": N_TIME, "left_at": N_TIME, "failed_logins": INTEGER,
        "locked_permanently": {"type": "boolean",
                               "description": "Locked until unlocked (policy permanent_lockout_after)"},
        "lockouts": {"type": "integer", "description": "Temporary locks in a row (each twice as long)"},
        "delayed_until": {**N_TIME, "description": "The next password attempt is refused until then"},
        "password_temporary": BOOLEAN, "password_changed_at": N_TIME, "has_password": BOOLEAN,
        "album_logs_in": BOOLEAN,
        "merged_into": {"anyOf": [_ref("PersonRef"), {"type": "null"}]},
        "merged_from": _array(_ref("PersonRef")),
        "last_import": {"anyOf": [_object({"id": INTEGER, "started_at": TIME, "finished_at": N_TIME,
                                           "source": STRING}), {"type": "null"}],
                        "description": "The data migration (SIS import) that last changed the person"},
        "identifiers": _array(_ref("Identifier")),
        "reset_addresses": _array({"type": "string", "description": "Where reset-link may send"}),
        "entitlements": _array(_object({"service": STRING, "protocol": {"type": "string", "enum": ["cas", "oidc"]},
                                        "entitled": BOOLEAN})),
        "identities": _array(_ref("Identity")),
        "pending_links": _array(_ref("PendingLink")),
        "sessions": _array(_ref("Session")),
        "events": _array(_ref("AuditEventWithWords")),
    }, description="A person's situation: what the console's person page shows. Never a PESEL or a hash."),
    "Service": _object({
        "name": STRING, "protocol": {"type": "string", "enum": ["cas", "oidc"]},
        "requires_entitlement": BOOLEAN, "default_roles": _nullable({"type": "array", "items": STRING}),
        "attributes": _array(STRING), "service_pattern": N_STRING, "logout_url": N_STRING,
        "username_attribute": N_STRING, "allow_proxy": BOOLEAN, "client_id": N_STRING,
        "public_client": BOOLEAN, "redirect_uris": _array(STRING), "scopes": _array(STRING),
        "grant_types": _array(STRING), "post_logout_redirect_uris": _array(STRING),
        "backchannel_logout_uri": N_STRING, "first_party": BOOLEAN,
        "id_token_signed_response_alg": N_STRING, "updated_at": TIME,
    }, ["name", "protocol", "requires_entitlement", "default_roles", "attributes", "updated_at"],
        description="A registered CAS service or OIDC client (never its secret)."),
    "Me": _object({"actor": {"type": "string", "description": "How your actions appear in the audit log"},
                   "album": STRING, "name": STRING, "roles": _array(STRING)}),
    "AuditPage": _object({"total": INTEGER, "page": INTEGER, "per_page": INTEGER, "pages": INTEGER,
                          "items": _array(_ref("AuditEventWithWords"))}),
    "ServiceList": _object({"items": _array(_ref("Service"))}),
}

#: What every action's body has: the reason the audit log keeps ("why").
REASON = {"type": "string", "minLength": 3, "maxLength": 500,
          "description": "Why (kept in the audit event as data.why); at least 3 characters",
          "examples": ["Ticket #4711: locked out before the exam"]}


def _action_request(name: str, properties: dict[str, Any] | None = None, required: list[str] | None = None,
                    description: str | None = None) -> None:
    props = {"reason": REASON, **(properties or {})}
    SCHEMAS[name] = _object(props, ["reason", *(required or [])], description=description)


def _action_response(name: str, properties: dict[str, Any]) -> None:
    SCHEMAS[name] = _object({**properties, "event": {
        "anyOf": [_ref("AuditEventWithWords"), {"type": "null"}],
        "description": "The audit event the action recorded (helpdesk.*, data.via = api)"}})


_action_request("ReasonRequest")
SCHEMAS["SearchRequest"] = _object({"q": {"type": "string", "description": "What GET /people takes as q"}}, ["q"])
_action_request("ResetLinkRequest", {
    "address": {"type": "string", "format": "email",
                "description": "One of the person's addresses (reset_addresses); default: the first"},
    "lang": {"type": "string", "enum": ["pl", "en"],
             "description": "Language of the mail; default: the policy's"}})
_action_request("TemporaryPasswordRequest", {
    "password": {"type": "string", "description": "Checked by the password policy; never logged"}}, ["password"])
_action_request("IdentifierRequest", {
    "kind": {"type": "string", "enum": IDENTIFIER_KINDS}, "value": {"type": "string", "format": "email"}},
    ["kind", "value"])
_action_request("IdentityRequest", {
    "provider": {"type": "string", "description": "Name of an [[upstream]] provider of idp.toml"},
    "subject": {"type": "string", "description": "The provider's sub"},
    "email": {"type": "string", "format": "email"}}, ["provider", "subject"])
_action_request("ResolveRequest", {
    "decision": {"type": "string", "enum": ["link", "reject"]},
    "album": {"type": "string", "description": "Link to this account instead of the one the link waits for"}},
    ["decision"])
_action_request("MergeRequest", {
    "duplicate": {"type": "string", "description": "Album number of the account merged into the one in the path"}},
    ["duplicate"])
_action_request("EndSessionsRequest", {
    "sid": {"type": "string", "description": "End only this session (Session.sid); default: all"}})

_action_response("ResetLinkDone", {"sent_to": STRING})
_action_response("TemporaryPasswordDone", {"temporary": {"const": True}})
_action_response("UnlockDone", {"unlocked": {"const": True}})
_action_response("SecondFactorReset", {"removed": _object({"totp": INTEGER, "keys": INTEGER,
                                                            "recovery_codes": INTEGER})})
_action_response("IdentifierAdded", {"identifier": _ref("Identifier")})
_action_response("IdentifierRemoved", {"removed": {"type": "string", "description": "The value removed"}})
_action_response("IdentityLinked", {"identity": _ref("Identity")})
_action_response("IdentityUnlinked", {"unlinked": {"type": "integer", "description": "The identity id"}})
_action_response("PendingResolved", {"pending_link": _ref("PendingLink")})
_action_response("Merged", {"survivor": _ref("PersonRef"), "merged": _ref("PersonRef"),
                            "moved": {"type": "object", "description": "What moved: identifiers, identities, "
                                                                       "pending, events"}})
_action_response("SessionsEnded", {"ended": INTEGER})
_action_response("RecoveryCodeIssued", {
    "code": {"type": "string", "description": "Shown once; hand it to the person"}, "expires_at": TIME})


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


RESPONSES = {
    "BadRequest": _error("The request is malformed: invalid_json, invalid_request (see `field`), or "
                         "reason_required (an action without a reason: nothing was done)."),
    "Unauthorized": {**_error("No token (unauthorized), or an unknown, revoked or expired one, or one whose owner "
                              "lost every role (invalid_token)."),
                     "headers": {"WWW-Authenticate": {"description": 'Bearer realm="idp admin API", '
                                                                     'error="invalid_token" (RFC 6750)',
                                                      "schema": STRING}}},
    "Forbidden": _error("The token's owner lacks the role this route needs (insufficient_role)."),
    "NotFound": _error("No such person (unknown_person), identifier, identity, session or pending link "
                       "(not_found)."),
    "Refused": _error("The action cannot be done in the person's present state; `error` says why (not_locked, "
                      "taken, already_present, last_way_to_log_in, merged, same_account, resolved, ...)."),
    "TooLarge": _error("The request body is larger than 2 MiB (too_large)."),
    "ServerError": _error("The service failed (internal_error); `reference` names the audit event for the "
                          "operators."),
    "RateLimited": {**_error("Too many requests (rate_limited): wait Retry-After seconds."),
                    "headers": {"Retry-After": {"schema": INTEGER}}},
}


def _json(schema_name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema_name)}}}


def _r(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


ALBUM = {"name": "album", "in": "path", "required": True, "schema": STRING, "description": "Album number"}


def _id(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": INTEGER, "description": what}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema or STRING, "description": description}


def _op(method: str, operation_id: str, summary: str, tag: str, ok: tuple[int, str, str], *,
        role: str = "helpdesk", params: list[dict[str, Any]] | None = None, body: str | None = None, errors: tuple[str, ...] = (),
        description: str | None = None) -> tuple[str, dict[str, Any]]:
    status, schema_name, ok_description = ok
    responses: dict[str, Any] = {str(status): _json(schema_name, ok_description)}
    for code, name in (("400", "BadRequest"), ("404", "NotFound"), ("409", "Refused")):
        if name in errors:
            responses[code] = _r(name)
    if "PasswordRejected" in errors:
        responses["422"] = _error("The password policy refuses the password (password_rejected; `violations` "
                                  "lists every broken rule).")
    if body:
        responses["413"] = _r("TooLarge")
    responses.update({"401": _r("Unauthorized"), "403": _r("Forbidden"), "429": _r("RateLimited"),
                      "5XX": _r("ServerError")})
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": [tag],
                                 "x-required-role": role, "parameters": params or [], "responses": responses}
    if description:
        operation["description"] = description
    if body:
        operation["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": _ref(body)}}}
    return method, operation


ACTION = ("BadRequest", "NotFound", "Refused")


def _paths() -> dict[str, dict[str, Any]]:
    ops = {
        "/me": [_op("get", "me", "Whom the token acts as", "staff", (200, "Me", "The token's owner"))],
        "/people": [_op(
            "get", "search_people", "Find people", "people", (200, "SearchResult", "Matching people, paginated"),
            params=[_query("q", "Album number, any address or alias, name (diacritics-insensitive), PESEL "
                                "(11 digits, compared by its keyed hash) or a reference code (E123)"),
                    _query("page", "Page number, from 1", INTEGER),
                    _query("per_page", "Results per page (1–100, default 25)", INTEGER)],
            errors=("BadRequest",))],
        "/people/search": [_op(
            "post", "search_people_post", "Find people (query in the body)", "people",
            (200, "SearchResult", "Matching people, paginated"),
            params=[_query("page", "Page number, from 1", INTEGER),
                    _query("per_page", "Results per page (1–100, default 25)", INTEGER)],
            body="SearchRequest", errors=("BadRequest",),
            description="Like GET /people, for a PESEL: the number stays out of URLs, proxies and access logs.")],
        "/people/{album}": [_op("get", "person", "A person's situation", "people",
                                (200, "Person", "Identifiers, status, entitlements, links, sessions, events"),
                                params=[ALBUM], errors=("NotFound",))],
        "/people/{album}/reset-link": [_op(
            "post", "send_reset_link", "Send a password-reset link", "actions",
            (200, "ResetLinkDone", "Queued: the same mail and link as /password/reset"),
            params=[ALBUM], body="ResetLinkRequest", errors=ACTION)],
        "/people/{album}/temporary-password": [_op(
            "post", "set_temporary_password", "Set a temporary password", "actions",
            (200, "TemporaryPasswordDone", "Set; the person changes it at the next login; sessions ended"),
            params=[ALBUM], body="TemporaryPasswordRequest", errors=(*ACTION, "PasswordRejected"))],
        "/people/{album}/unlock": [_op(
            "post", "unlock", "Lift a lockout", "actions", (200, "UnlockDone", "Unlocked"),
            params=[ALBUM], body="ReasonRequest", errors=ACTION)],
        "/people/{album}/second-factor/reset": [_op(
            "post", "reset_second_factor", "Forget the person's second factors (they enrol again)", "actions",
            (200, "SecondFactorReset", "Reset"), params=[ALBUM], body="ReasonRequest", errors=ACTION)],
        "/people/{album}/identifiers": [_op(
            "post", "add_identifier", "Add an alias or e-mail address", "actions",
            (201, "IdentifierAdded", "Added"), params=[ALBUM], body="IdentifierRequest", errors=ACTION)],
        "/people/{album}/identifiers/{identifier_id}": [_op(
            "delete", "remove_identifier", "Remove an alias or e-mail address", "actions",
            (200, "IdentifierRemoved", "Removed"), params=[ALBUM, _id("identifier_id", "Identifier.id")],
            body="ReasonRequest", errors=ACTION)],
        "/people/{album}/identities": [_op(
            "post", "link_identity", "Link an upstream identity", "actions", (201, "IdentityLinked", "Linked"),
            params=[ALBUM], body="IdentityRequest", errors=ACTION)],
        "/people/{album}/identities/{identity_id}": [_op(
            "delete", "unlink_identity", "Unlink an upstream identity", "actions",
            (200, "IdentityUnlinked", "Unlinked"), params=[ALBUM, _id("identity_id", "Identity.id")],
            body="ReasonRequest", errors=ACTION)],
        "/pending-links/{pending_id}/resolve": [_op(
            "post", "resolve_pending", "Resolve a pending link", "actions", (200, "PendingResolved", "Decided"),
            params=[_id("pending_id", "PendingLink.id")], body="ResolveRequest", errors=ACTION)],
        "/people/{album}/merge": [_op(
            "post", "merge", "Merge a duplicate account into this one", "actions", (200, "Merged", "Merged"),
            params=[ALBUM], body="MergeRequest", errors=ACTION,
            description="The duplicate's identifiers, upstream identities, pending links and history move to the "
                        "account in the path; the duplicate can no longer log in.")],
        "/people/{album}/sessions/end": [_op(
            "post", "end_sessions", "End single-sign-on sessions", "actions", (200, "SessionsEnded", "Ended"),
            params=[ALBUM], body="EndSessionsRequest", errors=ACTION)],
        "/people/{album}/recovery-code": [_op(
            "post", "issue_recovery_code", "Issue a one-time recovery code", "actions",
            (201, "RecoveryCodeIssued", "The code, shown once"), params=[ALBUM], body="ReasonRequest",
            errors=ACTION, description="After an in-person ID check, for a person who cannot reach any mailbox: "
                                       "the person sets a new password with it, the helpdesk never sees it.")],
        "/audit": [_op(
            "get", "audit_log", "Read the audit log", "audit", (200, "AuditPage", "Events, newest first"),
            params=[_query("action", "Action prefix, e.g. helpdesk. or login.failed"),
                    _query("account", "A person: album number or any address"),
                    _query("actor", "Exact actor, e.g. a staff address or cli"),
                    _query("reason", "Exact reason code, e.g. wrong_password"),
                    _query("since", "From (inclusive): YYYY-MM-DD or ISO 8601 date-time, UTC"),
                    _query("until", "Until (exclusive; a bare date includes that whole day), UTC"),
                    _query("page", "Page number, from 1", INTEGER),
                    _query("per_page", "Events per page (1–500, default 50)", INTEGER)],
            errors=("BadRequest", "NotFound"))],
        "/services": [_op("get", "services", "The service registry", "admin",
                          (200, "ServiceList", "Every registered service"), role="admin")],
    }
    paths: dict[str, dict[str, Any]] = {path: dict(entries) for path, entries in ops.items()}
    paths["/openapi.json"] = {"get": {
        "operationId": "openapi_document", "summary": "This document", "tags": ["meta"], "security": [],
        "x-required-role": None,
        "responses": {"200": {"description": "The OpenAPI 3.1 document",
                              "content": {"application/json": {"schema": {"type": "object"}}}}}}}
    return paths


DESCRIPTION = """\
The helpdesk console's search, person view and actions, for scripts.

Authenticate with a token from `idp staff token IDENTIFIER --name NAME --days N`, sent as
`Authorization: Bearer <token>`. A token acts as its owner, with the roles the owner holds at the time of
the request (helpdesk; admin for /services). Every action needs a JSON body with a `reason`; it is recorded
in the audit event (data.why, data.via = "api") that the answer returns. Errors are always JSON
`{"error": code, "message": text}`; switch on `error`, show `message` (Accept-Language: pl or en).
Rate limits: 120 requests a minute per token, actions 30 a minute (429 with Retry-After beyond that).
"""


def document() -> dict[str, Any]:
    """The whole document (a fresh copy: callers may change it)."""
    return copy.deepcopy({
        "openapi": "3.1.0",
        "info": {"title": "idp admin API", "version": VERSION, "description": DESCRIPTION,
                 "license": {"name": "MIT", "identifier": "MIT"}},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "tags": [{"name": "people", "description": "Find people and read their situation"},
                 {"name": "actions", "description": "Fixes, each audited with its reason"},
                 {"name": "audit", "description": "The audit log"},
                 {"name": "admin", "description": "For the admin role"},
                 {"name": "staff", "description": "The caller"},
                 {"name": "meta", "description": "This description"}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "idpat_…",
                                           "description": "idp staff token IDENTIFIER"}},
            "schemas": SCHEMAS,
            "responses": RESPONSES,
        },
    })
