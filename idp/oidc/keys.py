"""OpenID Connect signing keys, kept in the instance folder (`oidc-keys.json`), with rotation.

A *generation* is one key per algorithm in ALGORITHMS. Rotation adds a generation that signs from then on
and keeps the previous one published ("retiring") until `retire_at`, so tokens it signed still verify for
relying parties that cache our JWKS; after that the old keys are dropped and tokens they signed are
rejected as unknown.

JOSE goes through joserfc: authlib 1.9 is built on it (a required dependency, used by its OIDC grants),
and `authlib.jose` is deprecated there (importing it warns), so this module stays on the supported path.
Keys returned here are joserfc keys, which authlib's grants accept as they are.
"""
from __future__ import annotations

import copy
import fcntl
import json
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import BadSignatureError, ClaimError, JoseError
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey, import_key
from joserfc.jws import JWSRegistry, extract_compact
from joserfc.jwt import JWTClaimsRegistry

from idp.config import ConfigError
from idp.core.errors import DomainError

ALGORITHMS = ("RS256", "ES256", "EdDSA")
FILENAME = "oidc-keys.json"
ACTIVE, RETIRING = "active", "retiring"

#: alg -> (kty, crv) a stored key must have, and how a new one is made.
_KEY_SHAPES: dict[str, tuple[str, str | None]] = {"RS256": ("RSA", None), "ES256": ("EC", "P-256"),
                                                  "EdDSA": ("OKP", "Ed25519")}
_GENERATORS: dict[str, Callable[[dict[str, Any]], Key]] = {
    "RS256": lambda params: RSAKey.generate_key(2048, parameters=params),
    "ES256": lambda params: ECKey.generate_key("P-256", parameters=params),
    "EdDSA": lambda params: OKPKey.generate_key("Ed25519", parameters=params),
}
#: JWK members that are private key material: never published, never printed.
PRIVATE_FIELDS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

# joserfc warns (SecurityWarning) on every use of "EdDSA", which RFC 9864 deprecates in favour of "Ed25519".
# OpenID Connect clients and discovery still only know "EdDSA", so our registry keeps the name, quietly;
# the default registry (used by other code) is left as it is.
_EDDSA = copy.copy(JWSRegistry.algorithms["EdDSA"])
_EDDSA.security_warning = None


class _Registry(JWSRegistry):
    algorithms = {**JWSRegistry.algorithms, "EdDSA": _EDDSA}


_REGISTRY = _Registry(algorithms=ALGORITHMS)

#: Parsed files by path, shared by every KeyStore: importing an RSA private key costs ~40 ms, and callers
#: may build a KeyStore per request. An entry holds (file stamp, records); a changed stamp means re-read.
_CACHE: dict[Path, tuple[tuple[int, ...], list[_Record]]] = {}


class KeyStoreError(ConfigError):
    """The key file is missing, unreadable or malformed: a deployment problem (`idp` exits 2)."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class InvalidToken(DomainError):
    """A token we cannot accept (not a JWS, bad signature, unknown key, failed claim checks)."""

    code = "invalid_token"


class UnknownKey(InvalidToken, KeyError):
    """The token's kid is not among the published keys (never ours, or its key has been retired)."""

    code = "unknown_key"
    __str__ = Exception.__str__  # not KeyError's repr-quoted message


class InvalidSignature(InvalidToken):
    """The kid is ours but the signature (or the alg in the header) does not match the key."""

    code = "invalid_signature"


class InvalidClaims(InvalidToken):
    """The signature is good but a claim check the caller asked for failed (expired, wrong aud ...)."""

    code = "invalid_claims"


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: never private material."""

    kid: str
    alg: str
    status: str
    created_at: datetime
    retire_at: datetime | None

    def retired(self, now: datetime) -> bool:
        return self.retire_at is not None and self.retire_at <= _utc(now)


@dataclass(frozen=True)
class _Record:
    info: KeyInfo
    key: Key

    def to_json(self) -> dict[str, Any]:
        i = self.info
        return {"kid": i.kid, "alg": i.alg, "jwk": self.key.as_dict(private=True), "created_at": _iso(i.created_at),
                "retire_at": _iso(i.retire_at) if i.retire_at else None, "status": i.status}


def _utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime is UTC already (idp.core.clock's convention)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).isoformat().replace("+00:00", "Z")


def _parse_time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be an ISO-8601 string")
    try:
        return _utc(datetime.fromisoformat(value))
    except ValueError:
        raise ValueError(f"{where} is not an ISO-8601 time: {value!r}") from None


def _parse(entry: Any, n: int) -> _Record:
    where = f"keys[{n}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is not an object")
    kid, alg, jwk, status = entry.get("kid"), entry.get("alg"), entry.get("jwk"), entry.get("status")
    if not isinstance(kid, str) or not kid:
        raise ValueError(f"{where}.kid is missing")
    if alg not in _KEY_SHAPES:
        raise ValueError(f"{where}.alg must be one of {', '.join(ALGORITHMS)}, got {alg!r}")
    if status not in (ACTIVE, RETIRING):
        raise ValueError(f"{where}.status must be {ACTIVE!r} or {RETIRING!r}, got {status!r}")
    kty, crv = _KEY_SHAPES[alg]
    if not isinstance(jwk, dict) or jwk.get("kty") != kty or jwk.get("crv") != crv:
        raise ValueError(f"{where}.jwk is not a {kty}{' ' + crv if crv else ''} key, as {alg} needs")
    try:
        key = import_key({**jwk, "kid": kid, "alg": alg, "use": "sig"})
    except (JoseError, ValueError, TypeError) as exc:
        raise ValueError(f"{where}.jwk is not a valid key ({exc})") from None
    if not key.is_private:
        raise ValueError(f"{where}.jwk holds no private key")
    created = _parse_time(entry.get("created_at"), f"{where}.created_at")
    raw_retire = entry.get("retire_at")
    retire = None if raw_retire is None else _parse_time(raw_retire, f"{where}.retire_at")
    if status == RETIRING and retire is None:
        raise ValueError(f"{where} is retiring but has no retire_at")
    return _Record(KeyInfo(kid, alg, status, created, retire), key)


#: Public JWK of each loaded record (serialising an RSA key's modulus costs tens of microseconds, and the
#: JWKS endpoint is asked on every relying party's start and key refresh). Records are immutable and a
#: changed file makes new ones; an entry keeps its record alive, so its id cannot be reused meanwhile.
_PUBLIC: dict[int, tuple[_Record, dict[str, Any]]] = {}


def _public_jwk(record: _Record) -> dict[str, Any]:
    entry = _PUBLIC.get(id(record))
    if entry is not None and entry[0] is record:
        return entry[1]
    if len(_PUBLIC) > 64:  # records of files that have changed since
        _PUBLIC.clear()
    jwk = {k: v for k, v in record.key.as_dict(private=False).items() if k not in PRIVATE_FIELDS}
    jwk = {**jwk, "kid": record.info.kid, "alg": record.info.alg, "use": "sig"}
    _PUBLIC[id(record)] = (record, jwk)
    return jwk


class KeyStore:
    """The signing keys of one instance. Cheap to build; every method re-reads the file when it has changed
    on disk, so a running server follows an `idp keys rotate` without a restart."""

    def __init__(self, folder: Path):
        self.folder = Path(folder).resolve()
        self.path = self.folder / FILENAME

    # --- reading -------------------------------------------------------------------------------------------

    def _load(self, *, fresh: bool = False) -> list[_Record] | None:
        """The records, or None when there is no file yet; KeyStoreError when it cannot be used."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeyStoreError(self.path, f"cannot read: {exc.strerror}") from None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        cached = _CACHE.get(self.path)
        if not fresh and cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
                raise ValueError('expected an object {"keys": [...]}')
            records = [_parse(entry, n) for n, entry in enumerate(data["keys"])]
            self._check(records)
        except OSError as exc:
            raise KeyStoreError(self.path, f"cannot read: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise KeyStoreError(self.path, "not UTF-8 text (restore the file from a backup)") from None
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            raise KeyStoreError(self.path, f"corrupt key file: {exc} (restore it from a backup)") from None
        _CACHE[self.path] = (stamp, records)
        return records

    @staticmethod
    def _check(records: list[_Record]) -> None:
        kids = [r.info.kid for r in records]
        if len(set(kids)) != len(kids):
            raise ValueError("duplicate kid")
        for alg in ALGORITHMS:
            active = sum(1 for r in records if r.info.alg == alg and r.info.status == ACTIVE)
            if active != 1:
                raise ValueError(f"expected one active {alg} key, found {active}")

    def _require(self) -> list[_Record]:
        records = self._load()
        if records is None:
            raise KeyStoreError(self.path, "no signing keys: run `idp init` first")
        return records

    def keys(self) -> list[KeyInfo]:
        """Every stored key (active, retiring, and retired but not yet pruned), without key material."""
        return [r.info for r in self._require()]

    # --- writing -------------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time (two `idp init`s, a rotation racing a prune), across processes."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / f".{FILENAME}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise KeyStoreError(self.path, f"cannot lock: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, records: list[_Record]) -> None:
        """Atomically: readers see the old file or the new one, never half of one. Mode 0600."""
        text = json.dumps({"keys": [r.to_json() for r in records]}, indent=2) + "\n"
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{FILENAME}.", suffix=".tmp", dir=self.folder)  # mode 0600
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            tmp = None
        except OSError as exc:
            raise KeyStoreError(self.path, f"cannot write: {exc.strerror}") from None
        finally:
            if tmp is not None:
                with suppress(OSError):
                    os.unlink(tmp)
        _CACHE.pop(self.path, None)

    def _generation(self, now: datetime, taken: set[str]) -> list[_Record]:
        out = []
        for alg in ALGORITHMS:
            kid = secrets.token_urlsafe(12)  # 16 characters, 96 random bits
            while kid in taken:  # pragma: no cover - astronomically unlikely
                kid = secrets.token_urlsafe(12)
            taken.add(kid)
            key = _GENERATORS[alg]({"kid": kid, "alg": alg, "use": "sig"})
            out.append(_Record(KeyInfo(kid, alg, ACTIVE, _utc(now), None), key))
        return out

    def ensure(self, now: datetime) -> bool:
        """Create the first generation unless the file exists (which must then be valid). True if created."""
        with self._locked():
            if self._load(fresh=True) is not None:
                return False
            self._write(self._generation(now, set()))
            return True

    def rotate(self, now: datetime, retire_after: timedelta) -> list[str]:
        """Sign with a new generation from now on; keep the previous one published until now + retire_after.

        Keys already past their retire_at are dropped. Returns the new kids.
        """
        if retire_after <= timedelta(0):
            raise ValueError("retire_after must be positive")
        now = _utc(now)
        with self._locked():
            records = self._load(fresh=True)
            if records is None:
                raise KeyStoreError(self.path, "no signing keys to rotate: run `idp init` first")
            kept = []
            for r in records:
                if r.info.retired(now):
                    continue
                if r.info.status == ACTIVE:
                    r = _Record(KeyInfo(r.info.kid, r.info.alg, RETIRING, r.info.created_at, now + retire_after),
                                r.key)
                kept.append(r)
            new = self._generation(now, {r.info.kid for r in records})
            self._write(new + kept)  # active first: naive clients that take the first key get the right one
        return [r.info.kid for r in new]

    def prune(self, now: datetime) -> list[str]:
        """Remove retiring keys whose retire_at has come; returns their kids."""
        with self._locked():
            records = self._load(fresh=True) or []
            gone = [r.info.kid for r in records if r.info.retired(now)]
            if gone:
                self._write([r for r in records if r.info.kid not in gone])
        return gone

    # --- using ---------------------------------------------------------------------------------------------

    def signing_key(self, alg: str = "RS256") -> Key:
        """The active private key for `alg` (a joserfc key; its `kid` goes into the JWS header)."""
        if alg not in ALGORITHMS:
            raise ValueError(f"unsupported signing algorithm {alg!r} (supported: {', '.join(ALGORITHMS)})")
        return next(r.key for r in self._require() if r.info.alg == alg and r.info.status == ACTIVE)

    def sign(self, payload: dict[str, Any], alg: str = "RS256", typ: str | None = None) -> str:
        """A compact JWT signed by the active `alg` key; header {alg, kid} plus typ when given."""
        key = self.signing_key(alg)
        header = {"alg": alg, "kid": key.kid}
        if typ:
            header["typ"] = typ
        return jwt.encode(header, payload, key, algorithms=[alg], registry=_REGISTRY, default_type=None)

    def _published(self, now: datetime) -> list[_Record]:
        return [r for r in self._require() if not r.info.retired(now)]

    def public_jwks(self, now: datetime) -> dict[str, list[dict[str, Any]]]:
        """The JWKS document: public halves of the active and still-retiring keys."""
        return {"keys": [dict(_public_jwk(r)) for r in self._published(now)]}

    def verify(self, token: str, now: datetime, *, claims_options: dict[str, Any] | None = None) -> dict[str, Any]:
        """The claims of a JWT signed by one of our published keys.

        Claims are not checked unless `claims_options` is given (joserfc's ClaimsOption form, e.g.
        {"iss": {"essential": True, "value": issuer}}); then exp/nbf/iat are checked against `now` as well.
        Callers decide: an id_token_hint may be expired but must be ours.
        """
        try:
            header = extract_compact(token.encode("ascii"), registry=_REGISTRY).headers()
        except (JoseError, ValueError, UnicodeError) as exc:
            raise InvalidToken(f"not a signed JWT: {exc}") from None
        kid = header.get("kid")
        record = next((r for r in self._published(now) if r.info.kid == kid), None)
        if record is None:
            raise UnknownKey(f"unknown or retired signing key {kid!r}")
        if header.get("alg") != record.info.alg:
            raise InvalidSignature(f"alg {header.get('alg')!r} does not match key {kid!r} ({record.info.alg})")
        try:
            claims = jwt.decode(token, record.key, algorithms=[record.info.alg], registry=_REGISTRY).claims
        except BadSignatureError:
            raise InvalidSignature(f"bad signature (key {kid!r})") from None
        except (JoseError, ValueError) as exc:
            raise InvalidToken(f"not a valid JWT: {exc}") from None
        if claims_options is not None:
            registry = JWTClaimsRegistry(now=int(_utc(now).timestamp()), **claims_options)
            try:
                registry.validate(claims)
            except ClaimError as exc:  # ExpiredTokenError, InvalidClaimError, MissingClaimError ...
                raise InvalidClaims(str(exc)) from None
        return claims
