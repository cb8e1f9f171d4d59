"""The OpenAPI document describes exactly the routes of the api blueprint (both ways), with the role each
needs, and is a valid OpenAPI 3.1 document. (tests/api/conftest.py checks every answer of the other API
tests against it.)"""
from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from idp.api import openapi
from tests.api.conftest import PREFIX

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def _routes(app) -> dict[tuple[str, str], str]:
    """(OpenAPI path, method) -> endpoint of every rule of the api blueprint."""
    out = {}
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("api."):
            continue
        assert rule.rule.startswith(PREFIX)
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule[len(PREFIX):])
        for method in rule.methods & METHODS:
            out[(path, method.lower())] = rule.endpoint
    return out


def _documented() -> dict[tuple[str, str], dict]:
    return {(path, method): op for path, item in openapi.document()["paths"].items()
            for method, op in item.items()}


def test_every_route_is_documented_and_nothing_else(app):
    routes, documented = _routes(app), _documented()
    assert sorted(set(routes) - set(documented)) == [], "routes missing from the OpenAPI document"
    assert sorted(set(documented) - set(routes)) == [], "documented paths that are not routes"


def test_operation_ids_name_the_views(app):
    for key, endpoint in _routes(app).items():
        assert _documented()[key]["operationId"] == endpoint.split(".", 1)[1], key


def test_the_documented_role_is_the_enforced_one(app):
    for key, endpoint in _routes(app).items():
        view = app.view_functions[endpoint]
        assert _documented()[key]["x-required-role"] == getattr(view, "required_role", None), key


def test_path_parameters_are_declared(app):
    for (path, _method), op in _documented().items():
        named = set(re.findall(r"{([a-z_]+)}", path))
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert named == declared, path


def test_every_action_requires_a_reason():
    for (path, method), op in _documented().items():
        if method in ("post", "delete") and op["operationId"] != "search_people_post":  # a read, not an action
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            schema = openapi.document()["components"]["schemas"][ref.rsplit("/", 1)[1]]
            assert "reason" in schema["required"], path
            assert "400" in op["responses"], path


def test_every_operation_has_the_error_answers():
    for key, op in _documented().items():
        if op["operationId"] == "openapi_document":
            assert op["security"] == []
            continue
        assert {"401", "403", "429"} <= set(op["responses"]), key


def test_the_document_is_valid_openapi_3_1():
    validate(openapi.document())


def test_it_is_served_without_a_token(client):
    r = client.get(PREFIX + "/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.get_json() == openapi.document()


def test_serving_it_is_not_rate_limited(client):
    for _ in range(150):
        assert client.get(PREFIX + "/openapi.json").status_code == 200


@pytest.mark.parametrize("name", sorted(openapi.document()["components"]["schemas"]))
def test_every_schema_is_used(name):
    text = str(openapi.document()["paths"]) + str(
        {k: v for k, v in openapi.document()["components"].items() if k != "schemas"}) + str(
        {k: v for k, v in openapi.document()["components"]["schemas"].items() if k != name})
    assert f"#/components/schemas/{name}'" in text
