"""`idp init` creates the OIDC signing keys; `idp keys rotate` / `idp keys list` manage them, never showing
private key material."""
from __future__ import annotations

import json
import re
import stat

import pytest

from idp.oidc.keys import PRIVATE_FIELDS


def assert_no_private_material(instance, text: str) -> None:
    assert '"d":' not in text and "'d':" not in text
    secrets = {v for e in json.loads((instance.folder / "oidc-keys.json").read_text())["keys"]
               for k, v in e["jwk"].items() if k in PRIVATE_FIELDS}
    assert secrets and not any(s in text for s in secrets)


def stored(instance) -> list[dict]:
    return json.loads((instance.folder / "oidc-keys.json").read_text())["keys"]


@pytest.mark.parametrize("args", [["keys", "--help"], ["keys", "rotate", "--help"], ["keys", "list", "--help"]])
def test_help(instance, args):
    result = instance.invoke(*args)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    assert not any(instance.folder.iterdir())  # help creates nothing


def test_rotate_help_documents_the_grace_period(instance):
    text = " ".join(instance.invoke("keys", "rotate", "--help").stdout.split())
    assert "--retire-after" in text and "86400" in text and "token lifetime" in text
    assert "keys" in instance.invoke("--help").stdout


def test_init_creates_keys_once_with_the_real_script(instance):
    first = instance.run("init", cwd="/tmp")
    assert first.returncode == 0, first.stderr
    assert "signing keys created" in first.stdout
    path = instance.folder / "oidc-keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_text()
    assert sorted(e["alg"] for e in stored(instance)) == ["ES256", "EdDSA", "RS256"]
    second = instance.run("init", cwd="/tmp")
    assert second.returncode == 0, second.stderr
    assert "signing keys already present" in second.stdout
    assert path.read_text() == content
    assert_no_private_material(instance, first.stdout + first.stderr + second.stdout + second.stderr)


def test_list(ready):
    result = ready.invoke("keys", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["kid", "alg", "status", "created", "retire_at"]
    rows = [line.split() for line in lines[1:]]
    assert sorted((r[1], r[2], r[4]) for r in rows) == [("ES256", "active", "-"), ("EdDSA", "active", "-"),
                                                        ("RS256", "active", "-")]
    assert {r[0] for r in rows} == {e["kid"] for e in stored(ready)}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r[3]) for r in rows)
    assert_no_private_material(ready, result.output)


def test_rotate_then_list(ready):
    old = {e["kid"] for e in stored(ready)}
    result = ready.invoke("keys", "rotate", "--retire-after", "3600")
    assert result.exit_code == 0, result.output
    assert_no_private_material(ready, result.output)
    new = {e["kid"] for e in stored(ready)} - old
    assert len(new) == 3
    new_line, retiring_line = result.stdout.splitlines()
    assert new_line.startswith("new: ") and all(kid in new_line for kid in new)
    assert retiring_line.startswith("retiring: ") and all(kid in retiring_line for kid in old)
    assert "removed" not in result.stdout

    listing = ready.invoke("keys", "list")
    assert listing.exit_code == 0, listing.output
    status = {row.split()[0]: row.split()[2] for row in listing.stdout.splitlines()[1:]}
    assert status == {**{k: "retiring" for k in old}, **{k: "active" for k in new}}
    assert_no_private_material(ready, listing.output)


def test_rotate_removes_what_has_retired(ready):
    first = {e["kid"] for e in stored(ready)}
    assert ready.invoke("keys", "rotate").exit_code == 0
    data = json.loads((ready.folder / "oidc-keys.json").read_text())
    for e in data["keys"]:
        if e["status"] == "retiring":
            e["retire_at"] = "2000-01-01T00:00:00Z"  # long past
    (ready.folder / "oidc-keys.json").write_text(json.dumps(data))
    assert {row.split()[2] for row in ready.invoke("keys", "list").stdout.splitlines()[1:]} == {"active", "retired"}
    result = ready.invoke("keys", "rotate")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith("removed: ")
    assert all(kid in result.stdout.splitlines()[-1] for kid in first)
    assert len(stored(ready)) == 6 and not first & {e["kid"] for e in stored(ready)}


def test_rotate_refuses_a_zero_grace(ready):
    result = ready.invoke("keys", "rotate", "--retire-after", "0")
    assert result.exit_code == 2
    assert "--retire-after" in result.stderr


@pytest.mark.parametrize("args", [["keys", "list"], ["keys", "rotate"]])
def test_before_init_one_line_exit_2(instance, args):
    result = instance.invoke(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "idp init" in result.stderr and "oidc-keys.json" in result.stderr


@pytest.mark.parametrize("args", [["keys", "list"], ["keys", "rotate"], ["init"]])
def test_corrupt_key_file_is_a_configuration_error(ready, args):
    path = ready.folder / "oidc-keys.json"
    path.write_text('{"keys": [')
    result = ready.run(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("idp: configuration error:")
    assert str(path) in line and "corrupt" in line
    assert path.read_text() == '{"keys": ['  # never overwritten
