"""Per-institution policy: load and validate `policies/*.toml`, and check passwords against it.

The only module that reads policy files and the only one that imports zxcvbn. An institution's file is
merged key by key over `policies/default.toml`, so it carries only what its manual says differently.
"""
from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask_babel import lazy_gettext as _l

from idp.config import PROJECT_ROOT

DEFAULT_POLICY = PROJECT_ROOT / "policies" / "default.toml"

#: Identifier kinds an account has; `login.identifiers` picks which of them log in.
IDENTIFIER_KINDS = ("university_email", "private_email", "alias", "album")

_STR, _INT, _BOOL, _LIST_STR, _LIST_TABLE = "string", "integer", "boolean", "list of strings", "list of tables"

#: section -> key -> (type, validator or None). The schema; defaults live in policies/default.toml.
SCHEMA: dict[str, dict[str, tuple[str, Any]]] = {
    "institution": {
        "name": (_STR, None),
        "name_en": (_STR, None),
        "short_name": (_STR, None),
        "city": (_STR, None),
        "mail_domains": (_LIST_STR, None),
    },
    "login": {
        "identifiers": (_LIST_STR, lambda v: _subset(v, IDENTIFIER_KINDS)),
        "canonical_identifier": (_STR, lambda v: _one_of(v, ("university_email", "private_email", "album"))),
        "hint_pl": (_STR, None),
        "hint_en": (_STR, None),
        "default_language": (_STR, lambda v: _one_of(v, ("pl", "en"))),
    },
    "session": {
        "idle_minutes": (_INT, lambda v: _range(v, 1, 24 * 60)),
        "absolute_hours": (_INT, lambda v: _range(v, 1, 24 * 30)),
    },
    "password": {
        "min_length": (_INT, lambda v: _range(v, 8, 64)),
        "max_length": (_INT, lambda v: _range(v, 64, 1024)),
        "require_lower": (_BOOL, None),
        "require_upper": (_BOOL, None),
        "require_digit_or_special": (_BOOL, None),
        "forbid_personal_data": (_BOOL, None),
        "fragment_length": (_INT, lambda v: _range(v, 3, 10)),
        "min_score": (_INT, lambda v: _range(v, 0, 4)),
        "first_login_change": (_BOOL, None),
    },
    "migration": {
        "schedule": (_LIST_STR, lambda v: [_hhmm(x) for x in v] and None),
    },
    "help": {
        "contacts": (_LIST_TABLE, lambda v: [_contact(x) for x in v] and None),
    },
}


class PolicyError(Exception):
    """A malformed policy: stops create_app with file, key and reason."""


def _subset(values: list[str], allowed: tuple[str, ...]) -> str | None:
    bad = [v for v in values if v not in allowed]
    if bad:
        return f"unknown value(s) {bad}; allowed: {', '.join(allowed)}"
    if not values:
        return "must not be empty"
    return None


def _one_of(value: str, allowed: tuple[str, ...]) -> str | None:
    return None if value in allowed else f"must be one of {', '.join(allowed)}, got {value!r}"


def _range(value: int, low: int, high: int) -> str | None:
    return None if low <= value <= high else f"must be between {low} and {high}, got {value}"


def _hhmm(value: str) -> None:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError(f"{value!r} is not a time HH:MM")


def _contact(entry: dict) -> None:
    unknown = set(entry) - {"label_pl", "label_en", "email", "url"}
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)} in a contact")
    if "label_pl" not in entry or not ({"email", "url"} & set(entry)):
        raise ValueError("a contact needs label_pl and an email or url")
    bad = sorted(k for k, v in entry.items() if not isinstance(v, str))
    if bad:
        raise ValueError(f"contact key(s) {bad} must be strings")


def _type_ok(kind: str, value: Any) -> bool:
    if kind == _STR:
        return isinstance(value, str)
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _LIST_STR:
        return isinstance(value, list) and all(isinstance(x, str) for x in value)
    if kind == _LIST_TABLE:
        return isinstance(value, list) and all(isinstance(x, dict) for x in value)
    return False


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"{path}: policy file not found") from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: not UTF-8 (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from None


def _validate(path: Path, data: dict[str, Any]) -> None:
    for section, values in data.items():
        if section not in SCHEMA:
            raise PolicyError(f"{path}: unknown section [{section}]")
        if not isinstance(values, dict):
            raise PolicyError(f"{path}: [{section}] must be a table")
        for key, value in values.items():
            if key not in SCHEMA[section]:
                raise PolicyError(f"{path}: unknown key {section}.{key}")
            kind, check = SCHEMA[section][key]
            if not _type_ok(kind, value):
                article = "an" if kind[0] in "aeiou" else "a"
                raise PolicyError(f"{path}: {section}.{key} must be {article} {kind}, got {value!r}")
            if check:
                try:
                    reason = check(value)
                except ValueError as exc:
                    reason = str(exc)
                if reason:
                    raise PolicyError(f"{path}: {section}.{key} {reason}")


class Section:
    """Attribute access to one validated section (`policy.login.identifiers`)."""

    def __init__(self, values: dict[str, Any]):
        self.__dict__.update(values)


@dataclass(frozen=True)
class Policy:
    path: Path
    data: dict[str, dict[str, Any]]

    def __getattr__(self, section: str) -> Section:
        try:
            return Section(self.data[section])
        except KeyError:
            raise AttributeError(section) from None

    def name(self, lang: str) -> str:
        inst = self.data["institution"]
        return inst.get("name_en") if lang == "en" and inst.get("name_en") else inst["name"]

    def identifier_hint(self, lang: str) -> str:
        return self.data["login"]["hint_en" if lang == "en" else "hint_pl"]


def resolve_path(path: str | Path | None) -> Path:
    """The policy file: absolute as given; a relative path from the current directory when it exists
    there, else from the project (`IDP_POLICY=policies/agh.toml` works from any folder)."""
    if not path:
        return DEFAULT_POLICY
    path = Path(path)
    if not path.is_absolute() and not path.exists() and (PROJECT_ROOT / path).exists():
        return PROJECT_ROOT / path
    return path


def load_policy(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Policy:
    """Load default.toml, merge the chosen file and dotted overrides over it, validate every key."""
    path = resolve_path(path)
    base = _read(DEFAULT_POLICY)
    _validate(DEFAULT_POLICY, base)
    merged = {section: dict(values) for section, values in base.items()}
    if path.resolve() != DEFAULT_POLICY.resolve():
        own = _read(path)
        _validate(path, own)
        for section, values in own.items():
            merged.setdefault(section, {}).update(values)
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        _validate(Path("<overrides>"), {section: {key: value}})
        merged.setdefault(section, {})[key] = value
    for section, keys in SCHEMA.items():
        missing = [k for k in keys if k not in merged.get(section, {})]
        if missing:
            raise PolicyError(f"{DEFAULT_POLICY}: missing key(s) {', '.join(section + '.' + k for k in missing)}")
    if merged["password"]["min_length"] > merged["password"]["max_length"]:
        raise PolicyError(f"{path}: password.min_length is greater than password.max_length")
    return Policy(path=path, data=merged)


# --- password rules ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Violation:
    code: str
    message: str  # lazy string: rendered in the reader's language


@dataclass(frozen=True)
class PersonData:
    """What the password may not contain: the person's own data, plain (never stored like this)."""

    first_name: str = ""
    last_name: str = ""
    identifiers: tuple[str, ...] = ()
    album: str = ""
    pesel: str = ""
    birth_date: str = ""  # YYYY-MM-DD


def normalise(password: str) -> str:
    """NFKC, as NIST SP 800-63B asks: the same password typed on any keyboard hashes the same."""
    return unicodedata.normalize("NFKC", password)


def _fold(text: str) -> str:
    """Case- and diacritics-insensitive form for fragment matching (Ł has no decomposition)."""
    text = text.lower().replace("ł", "l")
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _personal_fragments(person: PersonData) -> list[str]:
    words: list[str] = [person.first_name, person.last_name, person.album, person.pesel]
    for ident in person.identifiers:
        local = ident.split("@", 1)[0]
        words.extend(re.split(r"[._\-+]", local))
        words.append(local)
    if person.birth_date:
        y, m, d = person.birth_date.split("-")
        words += [y + m + d, d + m + y, d + m + y[2:], y[2:] + m + d]
    return [_fold(w) for w in words if w]


def _zxcvbn_score(password: str, user_inputs: list[str]) -> int:
    if not password:
        return 0  # zxcvbn 4.5 raises IndexError on an empty string
    import zxcvbn_pl
    from zxcvbn import zxcvbn

    zxcvbn_pl.register()
    # zxcvbn 4.5 raises ValueError above 72 characters; such lengths are strong by length alone.
    return zxcvbn(password[:72], user_inputs=user_inputs)["score"]


def check_password(password: str, person: PersonData, policy: Policy) -> list[Violation]:
    """Every rule the password breaks, all at once. Empty list: acceptable."""
    rules = policy.data["password"]
    password = normalise(password)
    out: list[Violation] = []
    if len(password) > rules["max_length"]:
        # Refuse before any expensive check: absurd input must not cost CPU.
        return [Violation("too_long", _l("The password may have at most %(n)s characters.", n=rules["max_length"]))]
    if len(password) < rules["min_length"]:
        out.append(Violation("too_short", _l("The password must have at least %(n)s characters.", n=rules["min_length"])))
    if rules["require_lower"] and not any(c.islower() for c in password):
        out.append(Violation("no_lower", _l("The password must contain a lower case letter.")))
    if rules["require_upper"] and not any(c.isupper() for c in password):
        out.append(Violation("no_upper", _l("The password must contain an upper case letter.")))
    if rules["require_digit_or_special"] and all(c.isalpha() for c in password):
        out.append(Violation("no_digit_or_special", _l("The password must contain a digit or a special character.")))
    if rules["forbid_personal_data"]:
        folded = _fold(password)
        n = rules["fragment_length"]
        for word in _personal_fragments(person):
            if len(word) >= n and any(word[i:i + n] in folded for i in range(len(word) - n + 1)):
                out.append(Violation("personal_data",
                                     _l("The password must not contain fragments of your personal data or your login.")))
                break
    if rules["min_score"] > 0:
        inputs = [w for w in _personal_fragments(person) if w] + [
            _fold(policy.data["institution"].get("city", "")), _fold(policy.data["institution"]["name"]),
            "usos", "student", "uczelnia",
        ]
        if _zxcvbn_score(password, [w for w in inputs if w]) < rules["min_score"]:
            out.append(Violation("weak", _l("The password is too easy to guess: add more unusual words.")))
    return out
