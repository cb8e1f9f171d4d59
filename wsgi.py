"""WSGI entry point for any server: `gunicorn wsgi:app`. `idp serve` is the supported way."""
from idp import create_app

app = create_app()
