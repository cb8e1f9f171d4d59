"""Per-institution policy: load and validate `policies/*.toml`, and check passwords against it.

The only module that reads policy files and the only one that imports zxcvbn. An institution's file is
merged key by key over `policies/default.toml`, so it carries only what its manual says differently.
"""
from __future__ import annotations

import ipaddress
import re
import threading
import tomllib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from flask_babel import lazy_gettext as _l
from flask_babel import lazy_ngettext as _ln

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
        "lockout_threshold": (_INT, lambda v: _range(v, 0, 1000)),
        "lockout_minutes": (_INT, lambda v: _range(v, 1, 7 * 24 * 60)),
        "lockout_max_minutes": (_INT, lambda v: _range(v, 1, 30 * 24 * 60)),
        "permanent_lockout_after": (_INT, lambda v: _range(v, 0, 100)),
        "failure_reset_hours": (_INT, lambda v: _range(v, 1, 30 * 24)),
        "delay_after": (_INT, lambda v: _range(v, 0, 1000)),
        "delay_seconds": (_INT, lambda v: _range(v, 1, 3600)),
        "delay_max_seconds": (_INT, lambda v: _range(v, 1, 3600)),
        "address_failures": (_INT, lambda v: _range(v, 0, 1_000_000)),
        "address_window_minutes": (_INT, lambda v: _range(v, 1, 24 * 60)),
        "address_block_minutes": (_INT, lambda v: _range(v, 1, 24 * 60)),
        "exempt_networks": (_LIST_STR, lambda v: [_network(x) for x in v] and None),
        "address_rate_limit": (_STR, lambda v: _rate_limit(v)),
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
        "history": (_INT, lambda v: _range(v, 0, 24)),
        "max_age_days": (_INT, lambda v: _range(v, 0, 3650)),
        "blocklist": (_BOOL, None),
        "context_words": (_LIST_STR, None),
    },
    "reset": {
        "send_to": (_LIST_STR, lambda v: _subset(v, ("university_email", "private_email"))),
        "link_lifetime_minutes": (_INT, lambda v: _range(v, 5, 7 * 24 * 60)),
        "reveal_unknown_identifier": (_BOOL, None),
        "security_question": (_STR, lambda v: _one_of(v, ("pesel", "none"))),
        "max_wrong_answers": (_INT, lambda v: _range(v, 1, 20)),
    },
    "migration": {
        "schedule": (_LIST_STR, lambda v: [_hhmm(x) for x in v] and None),
        "left_grace_days": (_INT, lambda v: _range(v, 0, 365)),
    },
    "activation": {
        "enabled": (_BOOL, None),
        "free_attempts": (_INT, lambda v: _range(v, 0, 100)),
        "challenge_bits": (_INT, lambda v: _range(v, 8, 28)),
        "attempts_per_hour": (_INT, lambda v: _range(v, 1, 10000)),
    },
    "linking": {
        "confirm_minutes": (_INT, lambda v: _range(v, 5, 7 * 24 * 60)),
        "unknown_days": (_INT, lambda v: _range(v, 1, 365)),
    },
    "mfa": {
        "required_for": (_STR, lambda v: _one_of(v, ("staff", "everyone"))),
        "recovery_codes": (_INT, lambda v: _range(v, 5, 20)),
    },
    "helpdesk": {
        "reauth_minutes": (_INT, lambda v: _range(v, 1, 60)),
        "recovery_code_minutes": (_INT, lambda v: _range(v, 10, 7 * 24 * 60)),
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


def _network(value: str) -> None:
    """A CIDR block (192.0.2.0/24, 2001:db8::/48) or a single address; host bits must be zero."""
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a network in CIDR notation ({exc})") from None


def _rate_limit(value: str) -> str | None:
    """A Flask-Limiter rate string ("600/minute", "10 per second;1000/hour"), or empty for none."""
    if not value.strip():
        return None
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        return f"must be a rate limit such as \"600/minute\" (or empty for none), got {value!r}"
    return None


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
    login = merged["login"]
    for low, high in (("lockout_minutes", "lockout_max_minutes"), ("delay_seconds", "delay_max_seconds")):
        if login[low] > login[high]:
            raise PolicyError(f"{path}: login.{low} is greater than login.{high}")
    return Policy(path=path, data=merged)


# --- password rules ---------------------------------------------------------------------------------
#
# One engine for every path that sets a password. Cheap rules first; zxcvbn on a bounded prefix; the
# history (argon2 comparisons, done by the caller through `seen_before`) only when nothing else fails.

#: zxcvbn 4.5 raises above 72 characters and costs ~50 ms near that length with the Polish
#: dictionaries: only this prefix is scored (a longer password is long enough to be strong anyway).
ZXCVBN_PREFIX = 64
#: The longest canonical decomposition is 4 code points (U+1F82), so NFKC output is never shorter than
#: a quarter of its input: the bound for refusing over-long input before normalising it.
NFKC_MAX_SHRINK = 4
#: Top entries of zxcvbn's leaked-password frequency list used as the blocklist (whole-password match).
BLOCKLIST_SIZE = 10000
#: Words that must not appear in any password at any university (NIST: context-specific words).
GENERIC_CONTEXT_WORDS = ("usos", "usosweb", "student", "uczelnia", "haslo", "password")
STRENGTH = {0: _l("very weak"), 1: _l("weak"), 2: _l("fair"), 3: _l("strong"), 4: _l("very strong")}


@dataclass(frozen=True)
class Violation:
    code: str
    message: str  # lazy string: rendered in the reader's language


@dataclass(frozen=True)
class PersonData:
    """What the password may not contain: the person's own data. Never stored like this: the PESEL is
    either typed by the person (reset) or recognised through its keyed hash (`pesel_hash` + key)."""

    first_name: str = ""
    last_name: str = ""
    identifiers: tuple[str, ...] = ()
    album: str = ""
    pesel: str = ""
    birth_date: str = ""  # YYYY-MM-DD
    pesel_hash: str = ""
    pesel_key: str = ""


@dataclass(frozen=True)
class Rule:
    """One line of the checklist a person sees while typing."""

    code: str
    label: str
    #: None: not checked yet (history and same-as-current run only once every other rule passes)
    ok: bool | None


@dataclass(frozen=True)
class Verdict:
    ok: bool
    score: int
    violations: list[Violation]
    rules: list[Rule]

    @property
    def strength(self) -> str:
        return str(STRENGTH[self.score])


def normalise(password: str) -> str:
    """NFKC, as NIST SP 800-63B asks: the same password typed on any keyboard hashes the same."""
    return unicodedata.normalize("NFKC", password)


def _fold(text: str) -> str:
    """Case- and diacritics-insensitive form for fragment matching (Ł has no decomposition)."""
    text = text.lower().replace("ł", "l")
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _person_words(person: PersonData) -> list[str]:
    """Words whose fragments count, as written: names, login and e-mail local parts, album number."""
    words: list[str] = [person.first_name, person.last_name, person.album]
    for part in (person.first_name + " " + person.last_name).replace("-", " ").split():
        words.append(part)
    for ident in person.identifiers:
        local = ident.split("@", 1)[0]
        words.extend(re.split(r"[._\-+]", local))
        words.append(local)
    return [w for w in words if w]


def _name_fragments(person: PersonData) -> list[str]:
    """The person's words, folded for fragment matching."""
    return [_fold(w) for w in _person_words(person)]


def _date_forms(person: PersonData) -> list[str]:
    """The birth date as people write it, digits only (separators are stripped from the password too)."""
    if not person.birth_date:
        return []
    y, m, d = person.birth_date.split("-")
    return [y + m + d, d + m + y, d + m + y[2:], y[2:] + m + d, m + d + y]


def _contains_pesel(password: str, person: PersonData) -> bool:
    digits = re.sub(r"\D", "", password)
    if person.pesel and person.pesel in digits:
        return True
    if person.pesel_hash and person.pesel_key:
        from idp.core.pesel import keyed_hash

        for run in re.findall(r"\d{11,}", password) + ([digits] if len(digits) >= 11 else []):
            for i in range(len(run) - 10):
                if keyed_hash(run[i:i + 11], person.pesel_key) == person.pesel_hash:
                    return True
    return False


def _personal(password: str, person: PersonData, n: int) -> bool:
    folded = _fold(password)
    for word in _name_fragments(person):
        if len(word) >= n and any(word[i:i + n] in folded for i in range(len(word) - n + 1)):
            return True
    digits = re.sub(r"\D", "", password)
    if any(form in digits for form in _date_forms(person)):
        return True
    return _contains_pesel(password, person)


@lru_cache(maxsize=1)
def _blocklist() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(w.lower() for w in FREQUENCY_LISTS["passwords"][:BLOCKLIST_SIZE])


def _context_source(policy: Policy) -> list[str]:
    inst = policy.data["institution"]
    words = [inst.get("short_name", ""), inst.get("city", ""), *inst.get("mail_domains", [])]
    words += [d.split(".")[0] for d in inst.get("mail_domains", [])]
    words += [w for w in inst["name"].split() if len(w) >= 5]
    words += list(policy.data["password"].get("context_words", [])) + list(GENERIC_CONTEXT_WORDS)
    return [w for w in words if len(w) >= 3]


def context_words(policy: Policy) -> list[str]:
    return sorted({_fold(w) for w in _context_source(policy)})


def _user_inputs(person: PersonData, policy: Policy) -> list[str]:
    """zxcvbn's user inputs: each word as written and folded. zxcvbn lower-cases but does not fold, so
    with folded words alone the person's own `Brzęczyszczykiewicz1` would score "very strong"."""
    written = [w.lower() for w in _person_words(person) + _context_source(policy)]
    return list(dict.fromkeys(written + _name_fragments(person) + context_words(policy)))


#: zxcvbn puts each call's user inputs in a module-level dict (matching.RANKED_DICTIONARIES) and reads
#: them back while matching: concurrent calls in threads would score one person's password against
#: another person's data. One call at a time (zxcvbn is pure Python: the GIL serialises it anyway).
_ZXCVBN_LOCK = threading.Lock()


def _contains_context(folded: str, words: list[str]) -> bool:
    """Long context words anywhere; short ones (agh, kpu, uni) only where they are not part of a longer
    word, so "Komunikat" is not refused for containing "uni" while "agh2024" still is."""
    for w in words:
        if len(w) > 3:
            if w in folded:
                return True
        elif re.search(rf"(?<![a-z]){re.escape(w)}(?![a-z])", folded):
            return True
    return False


def _zxcvbn_score(password: str, user_inputs: list[str]) -> int:
    if not password:
        return 0  # zxcvbn 4.5 raises IndexError on an empty string
    import zxcvbn_pl
    from zxcvbn import zxcvbn

    zxcvbn_pl.register()
    with _ZXCVBN_LOCK:
        return zxcvbn(password[:ZXCVBN_PREFIX], user_inputs=user_inputs)["score"]


def _too_long(n: int) -> Verdict:
    msg = _ln("The password may have at most %(num)s character.", "The password may have at most %(num)s characters.", n)
    return Verdict(False, 0, [Violation("too_long", msg)], [Rule("too_long", str(msg), False)])


def evaluate(password: str, person: PersonData, policy: Policy, *,
             seen_before: Callable[[str], bool] | None = None,
             is_current: Callable[[str], bool] | None = None, defer_stored: bool = False) -> Verdict:
    """Every rule, its state, and the zxcvbn score. `seen_before(password)` answers the history rule
    (argon2 comparisons live in passwords.py); it runs only when every other rule passes.
    `defer_stored`: the rules that compare with stored passwords are listed but left unchecked (the live
    checklist: answering them as someone types would let a stolen session test guesses of the current
    password without any throttle; the submit checks them)."""
    rules = policy.data["password"]
    # Refused before any expensive check: absurd input must not cost CPU, not even NFKC's (which may
    # take a second on a 2 MB form field). NFKC shrinks text at most NFKC_MAX_SHRINK-fold, so input
    # longer than that many times the maximum is too long whatever it normalises to.
    if len(password) > NFKC_MAX_SHRINK * rules["max_length"]:
        return _too_long(rules["max_length"])
    password = normalise(password)
    if len(password) > rules["max_length"]:
        return _too_long(rules["max_length"])
    checks: list[tuple[str, bool, Any, Any]] = []  # code, ok, checklist label, violation message
    unchecked: set[str] = set()
    n_min = rules["min_length"]
    checks.append(("too_short", len(password) >= n_min,
                   _ln("at least %(num)s character", "at least %(num)s characters", n_min),
                   _ln("The password must have at least %(num)s character.",
                       "The password must have at least %(num)s characters.", n_min)))
    if rules["require_lower"]:
        checks.append(("no_lower", any(c.islower() for c in password), _l("a lower case letter"),
                       _l("The password must contain a lower case letter.")))
    if rules["require_upper"]:
        checks.append(("no_upper", any(c.isupper() for c in password), _l("an upper case letter"),
                       _l("The password must contain an upper case letter.")))
    if rules["require_digit_or_special"]:
        checks.append(("no_digit_or_special", not all(c.isalpha() for c in password),
                       _l("a digit or a special character"),
                       _l("The password must contain a digit or a special character.")))
    if rules["forbid_personal_data"]:
        checks.append(("personal_data", not _personal(password, person, rules["fragment_length"]),
                       _l("no fragments of your personal data or your login"),
                       _l("The password must not contain fragments of your personal data or your login.")))
    if rules["blocklist"]:
        folded = _fold(password)
        checks.append(("common", password.lower() not in _blocklist() and folded not in _blocklist(),
                       _l("not a commonly used password"),
                       _l("This password is on the list of the most commonly used passwords.")))
        checks.append(("context", not _contains_context(folded, context_words(policy)),
                       _l("not the university's name or words such as usos or student"),
                       _l("The password must not contain the university's name or words such as usos or student.")))
    score = _zxcvbn_score(password, _user_inputs(person, policy))
    if rules["min_score"] > 0:
        checks.append(("weak", score >= rules["min_score"],
                       _l("strength at least: %(level)s", level=STRENGTH[rules["min_score"]]),
                       _l("The password is too easy to guess (strength: %(level)s). Add more unusual words.",
                          level=STRENGTH[score])))
    if rules["history"] > 0:
        others_ok = all(ok for _, ok, _, _ in checks)
        reused = bool(others_ok and not defer_stored and seen_before is not None and seen_before(password))
        if not others_ok or defer_stored:
            unchecked.add("reused")
        checks.append(("reused", not reused,
                       _l("different from your previous %(n)s passwords", n=rules["history"]),
                       _l("The password must be different from your previous %(n)s passwords.", n=rules["history"])))
    elif is_current is not None:
        # No history rule, but a change must still change something (temporary password, change page).
        others_ok = all(ok for _, ok, _, _ in checks)
        same = bool(others_ok and not defer_stored and is_current(password))
        if not others_ok or defer_stored:
            unchecked.add("same_as_current")
        checks.append(("same_as_current", not same, _l("different from your current password"),
                       _l("The new password must differ from the current one.")))
    violations = [Violation(code, message) for code, ok, _, message in checks if not ok]
    return Verdict(not violations, score, violations,
                   [Rule(code, str(label), None if code in unchecked else ok) for code, ok, label, _ in checks])


def check_password(password: str, person: PersonData, policy: Policy, *,
                   seen_before: Callable[[str], bool] | None = None,
                   is_current: Callable[[str], bool] | None = None) -> list[Violation]:
    """Every rule the password breaks, all at once. Empty list: acceptable."""
    return evaluate(password, person, policy, seen_before=seen_before, is_current=is_current).violations
