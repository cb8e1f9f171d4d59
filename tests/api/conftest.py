"""The admin API under test: staff people with tokens, and a client that checks every answer against the
OpenAPI document (status documented for that route, body valid against its schema, always JSON)."""
from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from werkzeug.exceptions import HTTPException

from idp.api import openapi
from idp.core import staff
from idp.extensions import db
from tests.conftest import make_app
from tests.factories import create_account

PREFIX = "/api/v1"
#: An upstream provider the helpdesk can link identities of (never contacted by these tests).
UPSTREAM = {"name": "mail", "label": "Poczta uczelniana", "issuer": "https://mail.example.edu.pl",
            "client_id": "idp"}
_UNSET: Any = object()


@pytest.fixture
def app(request, database_url, instance_dir):
    yield from make_app(request, database_url, instance_dir, {"UPSTREAM": [UPSTREAM]})


def make_staff(album: str, role: str | None, *, first: str = "Halina", last: str = "Pomocna"):
    """A staff person (no PESEL, one university address) holding `role` (None: no role)."""
    account = create_account(album, first_name=first, last_name=last, pesel=None, private_email=None, aliases=(),
                             university_email=f"{first}.{last}.{album}@example.edu.pl".lower())
    if role:
        staff.grant(account, role, actor="test")
        db.session.commit()
    return account


def token_for(account, **kwargs) -> str:
    issued = staff.create_token(account, "tests", actor="test", **kwargs)
    db.session.commit()
    return issued.secret


@pytest.fixture
def helpdesk_staff(app):
    return make_staff("H0001", "helpdesk")


@pytest.fixture
def token(helpdesk_staff) -> str:
    return token_for(helpdesk_staff)


@pytest.fixture
def admin_token(app) -> str:
    return token_for(make_staff("A0001", "admin", first="Adam", last="Admin"))


class Api:
    """Calls /api/v1 like a script does and checks each answer against the OpenAPI document."""

    def __init__(self, client, token: str | None):
        self.client = client
        self.token = token
        self.doc = openapi.document()
        self.registry = Registry().with_resource("urn:idp-api", Resource.from_contents(
            self.doc, default_specification=DRAFT202012))
        self.operations = {op["operationId"]: (path, method, op) for path, item in self.doc["paths"].items()
                           for method, op in item.items()}

    def get(self, path: str, **kwargs):
        return self.call("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs):
        return self.call("POST", path, json=json, **kwargs)

    def delete(self, path: str, json: Any = None, **kwargs):
        return self.call("DELETE", path, json=json, **kwargs)

    def call(self, method: str, path: str, *, json: Any = None, data: Any = None, token: str | None = _UNSET,
             headers: dict[str, str] | None = None, query_string: dict | None = None,
             environ_base: dict | None = None):
        token = self.token if token is _UNSET else token
        all_headers = dict(headers or {})
        if token is not None:
            all_headers.setdefault("Authorization", f"Bearer {token}")
        response = self.client.open(PREFIX + path, method=method, json=json, data=data, headers=all_headers,
                                    query_string=query_string, environ_base=environ_base or {})
        self.check(method, path, response)
        return response

    def check(self, method: str, path: str, response) -> None:
        assert response.mimetype == "application/json", (response.status, response.get_data(as_text=True)[:300])
        body = response.get_json()
        try:
            endpoint, _args = self.client.application.url_map.bind("localhost").match(PREFIX + path, method=method)
        except HTTPException:
            endpoint = None
        if endpoint is None or not endpoint.startswith("api."):
            self.validate(body, "#/components/schemas/Error")
            return
        doc_path, doc_method, op = self.operations[endpoint.split(".", 1)[1]]
        status = str(response.status_code)
        assert status in op["responses"], f"{method} {path}: {status} is not documented for {doc_path}"
        answer = op["responses"][status]
        if "$ref" in answer:
            pointer = answer["$ref"]
        else:
            escaped = doc_path.replace("~", "~0").replace("/", "~1")
            pointer = f"#/paths/{escaped}/{doc_method}/responses/{status}/content/application~1json/schema"
            self.validate(body, pointer)
            return
        self.validate(body, pointer + "/content/application~1json/schema")

    def validate(self, body: Any, pointer: str) -> None:
        schema = {"$ref": "urn:idp-api" + pointer}
        errors = sorted(Draft202012Validator(schema, registry=self.registry).iter_errors(body), key=str)
        assert not errors, f"{pointer}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


@pytest.fixture
def api(client, token) -> Api:
    """The API as the helpdesk person's script sees it."""
    return Api(client, token)


def reason(text: str = "Ticket #4711: the student phoned") -> dict[str, str]:
    return {"reason": text}
