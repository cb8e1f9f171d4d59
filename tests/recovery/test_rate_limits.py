"""Reset requests are rate-limited per client address ("10 per minute") and per identifier ("3 per 15
minutes"): a mailbox cannot be flooded, and nobody can probe addresses quickly (idp/recovery/views.py)."""
from __future__ import annotations

from idp.recovery import views
from tests.conftest import csrf_token
from tests.recovery.helpers import USER, deliver, outbox_rows, request_link, text

PER_ADDRESS = 10
PER_IDENTIFIER = 3


def test_the_limits_are_the_documented_ones():
    assert views.REQUEST_LIMIT_IP.split(";")[0] == f"{PER_ADDRESS} per minute"
    assert views.REQUEST_LIMIT_IDENTIFIER.split(";")[0] == f"{PER_IDENTIFIER} per 15 minutes"


def test_per_identifier(client, person, smtp_sink):
    for _ in range(PER_IDENTIFIER):
        assert request_link(client, USER).status_code == 200
    r = request_link(client, USER)
    assert r.status_code == 429
    # The same address typed differently is the same identifier.
    assert request_link(client, "  Lukasz.Zolkiewski@Student.Example.edu.pl ").status_code == 429
    # Only the requests let through queued mail: the mailbox gets no more than the limit.
    assert len(outbox_rows(to_addr=USER)) == PER_IDENTIFIER
    assert deliver().sent == PER_IDENTIFIER and len(smtp_sink.to(USER)) == PER_IDENTIFIER
    # Another identifier from the same address is still served.
    assert request_link(client, "ktos.inny@student.example.edu.pl").status_code == 200


def test_per_identifier_counts_across_client_addresses(client, person, smtp_sink):
    for i in range(PER_IDENTIFIER):
        page = client.get("/password/reset")
        r = client.post("/password/reset", data={"csrf_token": csrf_token(text(page)), "identifier": USER},
                        environ_base={"REMOTE_ADDR": f"192.0.2.{i + 1}"})
        assert r.status_code == 200
    page = client.get("/password/reset")
    r = client.post("/password/reset", data={"csrf_token": csrf_token(text(page)), "identifier": USER},
                    environ_base={"REMOTE_ADDR": "192.0.2.99"})
    assert r.status_code == 429


def test_per_client_address(client, person, smtp_sink):
    for i in range(PER_ADDRESS):
        assert request_link(client, f"nikt{i}@student.example.edu.pl").status_code == 200, i
    assert request_link(client, "nikt.jeszcze@student.example.edu.pl").status_code == 429
    assert request_link(client, USER).status_code == 429  # a known address too: nothing queued
    assert outbox_rows() == []


def test_another_client_address_is_not_limited_by_the_first(client, person, smtp_sink):
    for i in range(PER_ADDRESS):
        assert request_link(client, f"nikt{i}@student.example.edu.pl").status_code == 200, i
    page = client.get("/password/reset")
    r = client.post("/password/reset", data={"csrf_token": csrf_token(text(page)), "identifier": USER},
                    environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert r.status_code == 200


def test_an_ipv6_client_counts_as_its_64_network(client, person, smtp_sink):
    def ask(address: str, identifier: str):
        page = client.get("/password/reset")
        return client.post("/password/reset", data={"csrf_token": csrf_token(text(page)), "identifier": identifier},
                           environ_base={"REMOTE_ADDR": address})

    # Every request from another address of one /64: one client, as the login throttle counts it.
    for i in range(PER_ADDRESS):
        assert ask(f"2001:db8:0:7::{i + 1:x}", f"nikt{i}@student.example.edu.pl").status_code == 200, i
    assert ask("2001:db8:0:7:ffff::1", "nikt.jeszcze@student.example.edu.pl").status_code == 429
    assert ask("2001:db8:0:8::1", "nikt.jeszcze@student.example.edu.pl").status_code == 200  # the next /64


def test_showing_the_form_is_not_limited(client):
    for _ in range(PER_ADDRESS + 5):
        assert client.get("/password/reset").status_code == 200
