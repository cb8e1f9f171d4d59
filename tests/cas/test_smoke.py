from tests.conftest import USOSWEB, cas_login, ticket_from
from tests.factories import PASSWORD


def test_login_and_validate(client, person):
    r = cas_login(client, "S12345@student.example.edu.pl", PASSWORD)
    assert r.status_code == 302
    t = ticket_from(r)
    r = client.get("/cas/serviceValidate", query_string={"service": USOSWEB, "ticket": t})
    assert "<cas:user>lukasz.zolkiewski@student.example.edu.pl</cas:user>" in r.get_data(as_text=True)
