"""Optional DKIM signing: a message signed with the configured key verifies against its public key."""
import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from idp.config import ConfigError
from idp.core import mail


@pytest.fixture
def dkim_key(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "dkim.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return path, public


RAW = (b"From: idp@example.edu.pl\r\nTo: jan@example.com\r\nSubject: test\r\n"
       b"Date: Sat, 21 Nov 2026 08:00:00 +0000\r\nMessage-ID: <1@example.edu.pl>\r\n\r\nHello\r\n")


def test_unsigned_without_a_key(app):
    assert mail.signed(RAW) == RAW


def test_signed_and_verifiable_with_a_key(app, dkim_key):
    import base64

    path, public = dkim_key
    app.config.update(MAIL_DKIM_KEY=str(path), MAIL_DKIM_SELECTOR="idp", MAIL_DKIM_DOMAIN="example.edu.pl")
    out = mail.signed(RAW)
    assert out.startswith(b"DKIM-Signature:") and out.endswith(RAW)
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dns(name, timeout=5):
        return record if name == b"idp._domainkey.example.edu.pl." else None

    assert dkim.verify(out, dnsfunc=dns)


def test_half_configured_dkim_stops_start(instance_dir):
    from idp import create_app

    with pytest.raises(ConfigError, match="set together"):
        create_app({"TESTING": True, "MAIL_DKIM_SELECTOR": "idp"}, instance=instance_dir)
