"""Every Polish string is translated, and the committed .mo files match the .po files."""
import io
from pathlib import Path

from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

TRANSLATIONS = Path(__file__).resolve().parent.parent / "idp" / "translations"


def _po(lang):
    with open(TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po", "rb") as fh:
        return read_po(fh, locale=lang)


def test_polish_catalogue_is_complete():
    missing = [m.id for m in _po("pl") if m.id and not m.string]
    fuzzy = [m.id for m in _po("pl") if m.id and m.fuzzy]
    assert missing == [] and fuzzy == []


def _key(value):
    """Plural entries come as lists; make them comparable."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def test_compiled_catalogues_are_current():
    for lang in ("pl", "en"):
        buf = io.BytesIO()
        write_mo(buf, _po(lang))
        with open(TRANSLATIONS / lang / "LC_MESSAGES" / "messages.mo", "rb") as fh:
            committed = read_mo(fh)
        buf.seek(0)
        fresh = read_mo(buf)
        def table(catalog):
            return {_key(m.id): _key(m.string) for m in catalog if m.id}

        assert table(fresh) == table(committed), (
            f"{lang}: run `make translations`")


def test_every_source_string_is_in_the_catalogue():
    from babel.messages.extract import extract_from_dir

    root = Path(__file__).resolve().parent.parent
    method_map = [("idp/**.py", "python"), ("idp/templates/**.html", "jinja2"), ("idp/templates/**.txt", "jinja2")]
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "_l": None,
                "lazy_ngettext": (1, 2), "_ln": (1, 2)}
    extracted = {msg[2] if isinstance(msg[2], str) else msg[2][0]
                 for msg in extract_from_dir(str(root), method_map=method_map, keywords=keywords)
                 if msg[0].startswith("idp")}
    known = {m.id if isinstance(m.id, str) else m.id[0] for m in _po("pl") if m.id}
    assert sorted(extracted - known) == [], "run `make translations` and translate the new strings"
