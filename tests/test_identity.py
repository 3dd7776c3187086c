"""Identity: bearer tokens (HS256 secret, RS256/ES256 JWKS), API keys, role selection, the
development secret and the CLI. Real crypto and a real database on both backends."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy import select

from hub.authz import apikeys, identity
from hub.authz.identity import (
    AuthenticationFailed,
    IdentityConfigError,
    TokenVerifier,
    authenticate,
    issue_token,
    parse_ttl,
    secret_file,
    signing_secret,
)
from hub.authz.models import ApiKey
from hub.authz.viewer import ANONYMOUS, PUBLIC_ROLE, Viewer
from hub.commands.identity import apikey, token
from hub.config import Settings
from hub.db import Database
from hub.errors import BadUserInput, Conflict, NotFound
from hub.migrate import upgrade
from tests.sql_capture import captured_sql
from tests.world import World

SECRET = "test-secret-" + "x" * 40
OTHER_SECRET = "other-secret-" + "y" * 40


def fails(reason: str) -> Any:
    """pytest.raises for an AuthenticationFailed with exactly this reason."""
    return pytest.raises(AuthenticationFailed, match=f"^{re.escape(reason)}$")


@pytest.fixture
def hs(tmp_path: Path) -> Settings:
    """Settings with an HS256 secret and nothing else, files under tmp_path."""
    return Settings(data_dir=tmp_path / "data", jwt_secret=SECRET)


@pytest.fixture
def hs_db(settings: Settings, tmp_path: Path) -> Settings:
    """The database of the `settings` fixture with an HS256 secret, files under tmp_path."""
    return replace(settings, data_dir=tmp_path / "data", jwt_secret=SECRET)


def standard_claims(settings: Settings, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": "user:1",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "roles": ["grid_worker"],
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- HS256 ------------------------------------------------------------------------------------


async def test_hs256_round_trip_resolves_grids_and_department(
    db: Database, world: World, hs_db: Settings
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    text = issue_token(
        hs_db,
        role="grid_worker",
        subject="member:7",
        grids=["G1", "C2"],
        department="community_service",
        ttl=timedelta(minutes=15),
        now=now,
    )
    viewer = await authenticate(db, TokenVerifier(hs_db), authorization=f"Bearer {text}", role=None)
    assert viewer == Viewer(
        subject="member:7",
        role="grid_worker",
        via="token",
        department_code="community_service",
        department_id=world.departments["community_service"].id,
        grid_codes=("G1", "C2"),
        grid_paths=(world.grids["G1"].path, world.grids["C2"].path),
        expires_at=now + timedelta(minutes=15),
    )
    assert viewer.grid_paths == ("/D1/S1/C1/G1/", "/D1/S1/C2/")
    # The token says who issued it and for whom, and that it is HS256.
    assert jwt.get_unverified_header(text)["alg"] == "HS256"
    payload = jwt.decode(text, options={"verify_signature": False})
    assert payload["iss"] == "gridhub" and payload["aud"] == "gridhub-api"


async def test_codes_resolve_once_a_minute_and_unknown_ones_fail_every_time(
    db: Database, world: World, hs_db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client sends the same token with every request: its department and grid codes are
    looked up once, then remembered for a minute (not a query per request)."""
    verifier = TokenVerifier(hs_db)
    known = issue_token(hs_db, role="grid_worker", subject="a", grids=["G1"], department="health")
    first = await authenticate(db, verifier, authorization=f"Bearer {known}", role=None)
    with captured_sql(db.engine.sync_engine) as statements:
        again = await authenticate(db, verifier, authorization=f"Bearer {known}", role=None)
    assert again == first and statements == []
    # Another token with the same codes shares the resolution; the minute passes, it is read anew.
    other = issue_token(hs_db, role="grid_worker", subject="b", grids=["G1"], department="health")
    with captured_sql(db.engine.sync_engine) as statements:
        second = await authenticate(db, verifier, authorization=f"Bearer {other}", role=None)
    assert statements == [] and second.grid_paths == first.grid_paths
    monkeypatch.setattr(identity, "SCOPE_SECONDS", 0.0)
    verifier.remember(first)
    with captured_sql(db.engine.sync_engine) as statements:
        await authenticate(db, verifier, authorization=f"Bearer {known}", role=None)
    assert len(statements) == 2  # the department, then the grids
    unknown = issue_token(hs_db, role="grid_worker", subject="c", grids=["NOPE"])
    for _ in range(2):
        with pytest.raises(AuthenticationFailed, match="unknown grid"):
            await authenticate(db, verifier, authorization=f"Bearer {unknown}", role=None)


def test_a_token_without_grids_or_department(hs: Settings) -> None:
    claims = TokenVerifier(hs).verify(issue_token(hs, role="leader", subject="u"))
    assert claims.roles == ("leader",)
    assert claims.grid_codes == () and claims.department_code is None
    assert claims.via == "token" and claims.subject == "u"


def test_expired_token(hs: Settings) -> None:
    old = datetime.now(UTC) - timedelta(hours=2)
    text = issue_token(hs, role="leader", subject="u", ttl=timedelta(hours=1), now=old)
    with fails("token expired"):
        TokenVerifier(hs).verify(text)


def test_the_leeway_accepts_a_token_expired_seconds_ago(hs: Settings) -> None:
    past = datetime.now(UTC) - timedelta(seconds=70)
    text = issue_token(hs, role="leader", subject="u", ttl=timedelta(seconds=60), now=past)
    assert TokenVerifier(hs).verify(text).subject == "u"


def test_not_yet_valid_token(hs: Settings) -> None:
    future = datetime.now(UTC) + timedelta(minutes=10)
    text = issue_token(hs, role="leader", subject="u", now=future)
    with fails("token not yet valid"):
        TokenVerifier(hs).verify(text)
    # nbf alone (iat now) is checked too.
    claims = standard_claims(hs, nbf=datetime.now(UTC) + timedelta(minutes=10))
    with fails("token not yet valid"):
        TokenVerifier(hs).verify(jwt.encode(claims, SECRET, algorithm="HS256"))


def test_tampered_payload(hs: Settings) -> None:
    text = issue_token(hs, role="grid_worker", subject="u", grids=["G1"])
    header, payload, signature = text.split(".")
    claims = json.loads(unb64(payload))
    claims["roles"] = ["admin"]
    forged = ".".join([header, b64(json.dumps(claims).encode()), signature])
    with fails("token signature is invalid"):
        TokenVerifier(hs).verify(forged)


def test_tampered_signature(hs: Settings) -> None:
    text = issue_token(hs, role="grid_worker", subject="u")
    header, payload, signature = text.split(".")
    raw = bytearray(unb64(signature))
    raw[0] ^= 0x01
    with fails("token signature is invalid"):
        TokenVerifier(hs).verify(".".join([header, payload, b64(bytes(raw))]))


def test_a_token_signed_with_another_secret(hs: Settings) -> None:
    text = issue_token(replace(hs, jwt_secret=OTHER_SECRET), role="leader", subject="u")
    with fails("token signature is invalid"):
        TokenVerifier(hs).verify(text)


def test_wrong_issuer_and_audience(hs: Settings) -> None:
    verifier = TokenVerifier(hs)
    with fails("token has the wrong issuer"):
        verifier.verify(issue_token(replace(hs, jwt_issuer="evil"), role="r", subject="u"))
    with fails("token has the wrong audience"):
        verifier.verify(issue_token(replace(hs, jwt_audience="other-api"), role="r", subject="u"))


@pytest.mark.parametrize("claim", ["exp", "iss", "aud", "sub"])
def test_required_claims(hs: Settings, claim: str) -> None:
    claims = standard_claims(hs, **{claim: None})
    with fails(f"token lacks the {claim!r} claim"):
        TokenVerifier(hs).verify(jwt.encode(claims, SECRET, algorithm="HS256"))


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"roles": None}, "token carries no role"),
        ({"roles": "admin"}, "token claim 'roles' must hold names of 1 to 64 characters"),
        ({"roles": [""]}, "token claim 'roles' must hold names of 1 to 64 characters"),
        ({"roles": None, "role": ["a"]}, "token claim 'role' must be a string"),
        ({"grids": "G1"}, "token claim 'grids' must hold names of 1 to 32 characters"),
        ({"department": 7}, "token claim 'department' must hold names of 1 to 32 characters"),
        ({"sub": "x" * 129}, "token subject must be 1 to 128 characters"),
    ],
)
def test_claims_of_the_wrong_shape(hs: Settings, overrides: dict[str, Any], reason: str) -> None:
    claims = standard_claims(hs, **overrides)
    with fails(reason):
        TokenVerifier(hs).verify(jwt.encode(claims, SECRET, algorithm="HS256"))


def test_a_single_role_claim_is_accepted(hs: Settings) -> None:
    claims = standard_claims(hs, roles=None, role="leader")
    verified = TokenVerifier(hs).verify(jwt.encode(claims, SECRET, algorithm="HS256"))
    assert verified.roles == ("leader",)


def test_alg_none_and_other_algorithms_are_refused(hs: Settings) -> None:
    verifier = TokenVerifier(hs)
    claims = standard_claims(hs)
    with fails("token algorithm not accepted"):
        verifier.verify(jwt.encode(claims, "", algorithm="none"))
    # An unsigned token with the signature part left empty by hand.
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = b64(json.dumps({**claims, "iat": 0, "exp": 2**31}).encode())
    with fails("token algorithm not accepted"):
        verifier.verify(f"{header}.{body}.")
    # HS512: a sound algorithm, but not on the list.
    with fails("token algorithm not accepted"):
        verifier.verify(jwt.encode(claims, SECRET * 2, algorithm="HS512"))


@pytest.mark.parametrize("text", ["garbage", "a.b.c", "", "...."])
def test_malformed_tokens(hs: Settings, text: str) -> None:
    with fails("malformed token"):
        TokenVerifier(hs).verify(text)


# --- RS256 / ES256 from a JWKS file -------------------------------------------------------------


class Keys:
    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True)
        ec_jwk = ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True)
        return {
            "keys": [
                {**rsa_jwk, "kid": "rsa-1", "use": "sig", "alg": "RS256"},
                {**ec_jwk, "kid": "ec-1"},
            ]
        }

    def rsa_public_pem(self) -> bytes:
        return self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


def write_jwks(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.fixture
def pk(tmp_path: Path, keys: Keys) -> Settings:
    """Settings with public keys only (no HS256 secret)."""
    jwks = write_jwks(tmp_path / "jwks.json", keys.jwks())
    return Settings(data_dir=tmp_path / "data", jwks_file=jwks)


def test_rs256_and_es256_through_the_jwks_file(pk: Settings, keys: Keys) -> None:
    verifier = TokenVerifier(pk)
    claims = standard_claims(pk, grids=["G1"], department="health")
    rs = jwt.encode(claims, keys.rsa, algorithm="RS256", headers={"kid": "rsa-1"})
    es = jwt.encode(claims, keys.ec, algorithm="ES256", headers={"kid": "ec-1"})
    for text in (rs, es):
        verified = verifier.verify(text)
        assert verified.subject == "user:1"
        assert verified.grid_codes == ("G1",) and verified.department_code == "health"


def test_public_key_tokens_fail_like_any_other(pk: Settings, keys: Keys) -> None:
    verifier = TokenVerifier(pk)
    claims = standard_claims(pk)
    with fails("token signed with an unknown key"):
        verifier.verify(jwt.encode(claims, keys.rsa, algorithm="RS256", headers={"kid": "rsa-9"}))
    with fails("token has no key id (kid)"):
        verifier.verify(jwt.encode(claims, keys.rsa, algorithm="RS256"))
    # A known kid, signed by somebody else's key.
    with fails("token signature is invalid"):
        verifier.verify(
            jwt.encode(claims, keys.stranger, algorithm="RS256", headers={"kid": "rsa-1"})
        )
    # An RS256 token pointing at the EC key.
    with fails("token algorithm does not match its key"):
        verifier.verify(jwt.encode(claims, keys.rsa, algorithm="RS256", headers={"kid": "ec-1"}))
    expired = standard_claims(pk, exp=datetime.now(UTC) - timedelta(hours=1))
    with fails("token expired"):
        verifier.verify(jwt.encode(expired, keys.ec, algorithm="ES256", headers={"kid": "ec-1"}))
    # Without a secret, HS256 is not accepted at all.
    with fails("HS256 tokens are not accepted here (no secret)"):
        verifier.verify(jwt.encode(claims, SECRET, algorithm="HS256"))


def hmac_token(claims: dict[str, Any], key: bytes, kid: str) -> str:
    """An HS256 token made by hand (PyJWT itself refuses a PEM as an HMAC key)."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(claims, default=lambda d: int(d.timestamp())).encode())
    signature = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


def test_an_hs256_token_signed_with_the_rsa_public_key_is_refused(
    tmp_path: Path, keys: Keys
) -> None:
    jwks = write_jwks(tmp_path / "jwks.json", keys.jwks())
    claims = standard_claims(Settings())
    forged = hmac_token(claims, keys.rsa_public_pem(), kid="rsa-1")
    # With a secret configured as well, HS256 is checked against the secret only.
    both = Settings(data_dir=tmp_path / "data", jwt_secret=SECRET, jwks_file=jwks)
    with fails("token signature is invalid"):
        TokenVerifier(both).verify(forged)
    # The same construction with the real secret passes: the check above is the key's doing.
    assert TokenVerifier(both).verify(hmac_token(claims, SECRET.encode(), kid="rsa-1"))
    only_keys = Settings(data_dir=tmp_path / "data", jwks_file=jwks)
    with fails("HS256 tokens are not accepted here (no secret)"):
        TokenVerifier(only_keys).verify(forged)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"kty": "oct", "k": "c2VjcmV0", "kid": "s"}, "is a symmetric key"),
        ("private", "is a private key"),
        ("no-kid", "has no kid"),
        ("small-rsa", "below the minimum"),
    ],
)
def test_unusable_jwks_files_fail_when_the_verifier_is_built(
    tmp_path: Path, keys: Keys, entry: Any, problem: str
) -> None:
    if entry == "private":
        entry = {**json.loads(RSAAlgorithm.to_jwk(keys.rsa)), "kid": "p"}
    elif entry == "no-kid":
        entry = ECAlgorithm.to_jwk(keys.ec.public_key(), as_dict=True)
    elif entry == "small-rsa":
        small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        entry = {**RSAAlgorithm.to_jwk(small.public_key(), as_dict=True), "kid": "small"}
    jwks = write_jwks(tmp_path / "jwks.json", {"keys": [entry]})
    with pytest.raises(IdentityConfigError, match=problem):
        TokenVerifier(Settings(data_dir=tmp_path, jwks_file=jwks))


def test_jwks_keys_for_other_uses_are_left_out(tmp_path: Path, keys: Keys) -> None:
    document = keys.jwks()
    document["keys"].append(
        {**RSAAlgorithm.to_jwk(keys.stranger.public_key(), as_dict=True), "kid": "e", "use": "enc"}
    )
    settings = Settings(data_dir=tmp_path, jwks_file=write_jwks(tmp_path / "j.json", document))
    claims = standard_claims(settings)
    with fails("token signed with an unknown key"):
        TokenVerifier(settings).verify(
            jwt.encode(claims, keys.stranger, algorithm="RS256", headers={"kid": "e"})
        )
    with pytest.raises(IdentityConfigError, match="holds no RS256 or ES256 signing key"):
        TokenVerifier(replace(settings, jwks_file=write_jwks(tmp_path / "k.json", {"keys": []})))
    with pytest.raises(IdentityConfigError, match="cannot read the JWKS file"):
        TokenVerifier(replace(settings, jwks_file=tmp_path / "missing.json"))


# --- the development secret ---------------------------------------------------------------------


def test_the_dev_secret_file_is_created_once_private_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "nested" / "data")
    path = secret_file(settings)
    assert signing_secret(settings, create=False) is None
    assert not path.exists()
    first = signing_secret(settings, create=True)
    assert first is not None and len(first) >= 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signing_secret(settings, create=True) == first
    assert signing_secret(settings, create=False) == first
    # The token command and the server share it: a token issued now verifies.
    text = issue_token(settings, role="leader", subject="u")
    assert TokenVerifier(settings).verify(text).roles == ("leader",)
    assert signing_secret(settings, create=True) == first
    # No temporary files are left behind.
    assert sorted(p.name for p in path.parent.iterdir()) == ["jwt-secret"]


def test_two_data_dirs_have_different_secrets(tmp_path: Path) -> None:
    one = signing_secret(Settings(data_dir=tmp_path / "a"), create=True)
    two = signing_secret(Settings(data_dir=tmp_path / "b"), create=True)
    assert one != two


def test_a_configured_secret_wins_and_writes_no_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", jwt_secret=SECRET)
    assert signing_secret(settings, create=True) == SECRET
    assert not (tmp_path / "data").exists()
    with pytest.raises(IdentityConfigError, match="shorter than 32 bytes"):
        signing_secret(replace(settings, jwt_secret="short"), create=False)


def test_without_any_key_every_token_fails(tmp_path: Path) -> None:
    signer = Settings(data_dir=tmp_path / "signer")
    text = issue_token(signer, role="leader", subject="u")
    verifier = TokenVerifier(Settings(data_dir=tmp_path / "server"))
    with fails("no token signing key is configured"):
        verifier.verify(text)
    with fails("no token signing key is configured"):
        verifier.verify("garbage")
    # The verifier never creates a secret.
    assert not (tmp_path / "server").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("7d", timedelta(days=7)),
    ],
)
def test_parse_ttl(text: str, expected: timedelta) -> None:
    assert parse_ttl(text) == expected


@pytest.mark.parametrize("text", ["", "1", "h", "0s", "1w", "-1h", "1.5h", "400d", "1h30m"])
def test_parse_ttl_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_ttl(text)


# --- authenticate: headers, roles, codes --------------------------------------------------------


async def test_no_authorization_header_is_the_public_role(db: Database, hs_db: Settings) -> None:
    verifier = TokenVerifier(hs_db)
    viewer = await authenticate(db, verifier, authorization=None, role=None)
    assert viewer == ANONYMOUS
    assert viewer.role == PUBLIC_ROLE and viewer.via == "anonymous"
    assert await authenticate(db, verifier, authorization=None, role="public") == ANONYMOUS
    with fails("role 'leader' needs a credential that carries it"):
        await authenticate(db, verifier, authorization=None, role="leader")


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Basic dXNlcjpwYXNz", "unsupported authorization scheme"),
        ("Token abc", "unsupported authorization scheme"),
        ("Bearer", "empty bearer credential"),
        ("Bearer   ", "empty bearer credential"),
        ("", "unsupported authorization scheme"),
        ("Bearer not-a-jwt", "malformed token"),
        ("Bearer ghk_short", "malformed API key"),
    ],
)
async def test_bad_authorization_headers(
    db: Database, hs_db: Settings, header: str, reason: str
) -> None:
    with fails(reason):
        await authenticate(db, TokenVerifier(hs_db), authorization=header, role=None)


async def test_the_scheme_is_case_insensitive(db: Database, world: World, hs_db: Settings) -> None:
    text = issue_token(hs_db, role="leader", subject="u")
    viewer = await authenticate(db, TokenVerifier(hs_db), authorization=f"bearer {text}", role=None)
    assert viewer.role == "leader"


async def test_several_roles_need_the_role_header(
    db: Database, world: World, hs_db: Settings
) -> None:
    verifier = TokenVerifier(hs_db)
    text = issue_token(hs_db, role=["grid_worker", "dept_officer"], subject="u", grids=["G2"])
    bearer = f"Bearer {text}"
    with fails(
        "the credential carries several roles (grid_worker, dept_officer): "
        "pick one with the X-GridHub-Role header"
    ):
        await authenticate(db, verifier, authorization=bearer, role=None)
    viewer = await authenticate(db, verifier, authorization=bearer, role="dept_officer")
    assert viewer.role == "dept_officer"
    assert viewer.grid_paths == (world.grids["G2"].path,)
    viewer = await authenticate(db, verifier, authorization=bearer, role="grid_worker")
    assert viewer.role == "grid_worker"
    with fails("the credential does not carry the role 'admin'"):
        await authenticate(db, verifier, authorization=bearer, role="admin")


async def test_a_single_role_token_with_another_role_header_fails(
    db: Database, world: World, hs_db: Settings
) -> None:
    verifier = TokenVerifier(hs_db)
    bearer = "Bearer " + issue_token(hs_db, role="grid_worker", subject="u")
    assert (await authenticate(db, verifier, authorization=bearer, role="grid_worker")).role == (
        "grid_worker"
    )
    with fails("the credential does not carry the role 'leader'"):
        await authenticate(db, verifier, authorization=bearer, role="leader")
    # Not even the public role: a credential never falls back to another role.
    with fails("the credential does not carry the role 'public'"):
        await authenticate(db, verifier, authorization=bearer, role="public")


async def test_unknown_codes_in_a_token_fail_closed(
    db: Database, world: World, hs_db: Settings
) -> None:
    verifier = TokenVerifier(hs_db)

    async def viewer_for(**kwargs: Any) -> Viewer:
        text = issue_token(hs_db, role="grid_worker", subject="u", **kwargs)
        return await authenticate(db, verifier, authorization=f"Bearer {text}", role=None)

    with fails("the credential names an unknown department code 'nowhere'"):
        await viewer_for(department="nowhere")
    with fails("the credential names unknown grid code(s) 'G9'"):
        await viewer_for(grids=["G1", "G9"])
    with fails("the credential names unknown grid code(s) 'a', 'b', 'c', 'd', 'e' and 2 more"):
        await viewer_for(grids=list("abcdefg"))
    # The known ones resolve, repeated codes once.
    viewer = await viewer_for(grids=["G4", "G1", "G4"], department="health")
    assert viewer.grid_codes == ("G4", "G1")
    assert viewer.grid_paths == (world.grids["G4"].path, world.grids["G1"].path)
    assert viewer.department_id == world.departments["health"].id


async def test_an_expired_token_fails_authenticate(
    db: Database, world: World, hs_db: Settings
) -> None:
    old = datetime.now(UTC) - timedelta(days=1)
    text = issue_token(hs_db, role="leader", subject="u", now=old)
    with fails("token expired"):
        await authenticate(db, TokenVerifier(hs_db), authorization=f"Bearer {text}", role=None)


# --- API keys -----------------------------------------------------------------------------------


async def test_api_key_create_verify_list_revoke(
    db: Database, world: World, hs_db: Settings
) -> None:
    async with db.transaction() as session:
        key, plain = await apikeys.create(
            session,
            name="health-system",
            role="dept_officer",
            department_code="health",
            grid_codes=["S1"],
        )
    assert plain.startswith(f"ghk_{key.prefix}_")
    secret = plain.split("_", 2)[2]
    assert len(secret) >= 43  # 32 random bytes, base64
    assert key.secret_hash != plain and secret not in key.secret_hash
    assert key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()

    verifier = TokenVerifier(hs_db)
    viewer = await authenticate(db, verifier, authorization=f"Bearer {plain}", role=None)
    assert viewer == Viewer(
        subject="apikey:health-system",
        role="dept_officer",
        via="api_key",
        department_code="health",
        department_id=world.departments["health"].id,
        grid_codes=("S1",),
        grid_paths=(world.grids["S1"].path,),
        expires_at=None,
    )
    with fails("the credential does not carry the role 'leader'"):
        await authenticate(db, verifier, authorization=f"Bearer {plain}", role="leader")

    async with db.transaction() as session:
        await apikeys.create(session, name="civil", role="dept_officer")
    async with db.reader() as session:
        listed = await apikeys.list_keys(session)
    assert [k.name for k in listed] == ["health-system", "civil"]
    assert listed[0].last_used_at is not None and listed[1].last_used_at is None

    async with db.transaction() as session:
        revoked = await apikeys.revoke(session, name="health-system")
    assert revoked.revoked_at is not None
    with fails("API key revoked"):
        await authenticate(db, verifier, authorization=f"Bearer {plain}", role=None)
    async with db.transaction() as session:
        again = await apikeys.revoke(session, name="health-system")
        assert again.revoked_at == revoked.revoked_at
        with pytest.raises(NotFound):
            await apikeys.revoke(session, name="nobody")


async def test_api_keys_that_do_not_match(db: Database, world: World) -> None:
    async with db.transaction() as session:
        key, plain = await apikeys.create(session, name="k", role="dept_officer")
    prefix, secret = plain[4:12], plain[13:]
    flipped = ("A" if secret[0] != "A" else "B") + secret[1:]
    async with db.transaction() as session:
        with fails("unknown API key"):
            await apikeys.verify(session, f"ghk_{prefix}_{flipped}")
        with fails("unknown API key"):
            await apikeys.verify(
                session, f"ghk_{'Z' * 8 if prefix != 'Z' * 8 else 'Y' * 8}_{secret}"
            )
        for malformed in ("ghk_", plain[:-10], plain.replace("_", "-", 1), f"ghk_{prefix}{secret}"):
            with fails("malformed API key"):
                await apikeys.verify(session, malformed)
        assert (await apikeys.verify(session, plain)).id == key.id


async def test_api_key_creation_checks_its_input(db: Database, world: World) -> None:
    async with db.transaction() as session:
        await apikeys.create(session, name="dup", role="r")
    async with db.transaction() as session:
        with pytest.raises(Conflict, match="already exists"):
            await apikeys.create(session, name="dup", role="r")
        with pytest.raises(BadUserInput, match="unknown department code"):
            await apikeys.create(session, name="x", role="r", department_code="nowhere")
        with pytest.raises(BadUserInput, match="unknown grid code"):
            await apikeys.create(session, name="y", role="r", grid_codes=["G1", "G9"])
        with pytest.raises(BadUserInput):
            await apikeys.create(session, name="", role="r")
        with pytest.raises(BadUserInput):
            await apikeys.create(session, name="z", role="")


async def test_an_api_key_whose_grid_went_away_fails_closed(
    db: Database, world: World, hs_db: Settings
) -> None:
    async with db.transaction() as session:
        _, plain = await apikeys.create(session, name="k", role="r", grid_codes=["G1"])
    async with db.transaction() as session:
        row = await session.scalar(select(ApiKey).where(ApiKey.name == "k"))
        assert row is not None
        row.grid_codes = ["G1", "GONE"]
    with fails("the credential names unknown grid code(s) 'GONE'"):
        await authenticate(db, TokenVerifier(hs_db), authorization=f"Bearer {plain}", role=None)


async def test_last_used_is_recorded_at_most_once_a_minute(db: Database, world: World) -> None:
    async with db.transaction() as session:
        _, plain = await apikeys.create(session, name="k", role="r")

    async def use(at: datetime) -> None:
        async with db.transaction() as session:
            await apikeys.verify(session, plain, now=at)

    async def last_used() -> datetime | None:
        async with db.reader() as session:
            return await session.scalar(select(ApiKey.last_used_at).where(ApiKey.name == "k"))

    start = datetime(2030, 1, 1, 8, 0, tzinfo=UTC)
    assert await last_used() is None
    await use(start)
    assert await last_used() == start
    await use(start + timedelta(seconds=30))
    await use(start + timedelta(seconds=59))
    assert await last_used() == start
    await use(start + timedelta(seconds=60))
    assert await last_used() == start + timedelta(seconds=60)
    await use(start + timedelta(minutes=5))
    assert await last_used() == start + timedelta(minutes=5)


# --- the CLI ------------------------------------------------------------------------------------


def cli_env(data_dir: Path) -> dict[str, str | None]:
    return {"GRIDHUB_DATA_DIR": str(data_dir), "GRIDHUB_JWT_SECRET": None}


def test_the_token_command(tmp_path: Path) -> None:
    data = tmp_path / "data"
    runner = CliRunner()
    result = runner.invoke(
        token,
        ["grid_worker", "--grid", "G1", "--grid", "G2", "--department", "health", "--ttl", "15m"],
        env=cli_env(data),
    )
    assert result.exit_code == 0, result.output
    assert "Generated a development signing secret" in result.stderr
    text = result.stdout.strip()
    assert "\n" not in text and text.count(".") == 2
    secret = (data / "jwt-secret").read_text().strip()
    payload = jwt.decode(text, secret, algorithms=["HS256"], audience="gridhub-api")
    assert payload["sub"] == "dev:grid_worker"
    assert payload["roles"] == ["grid_worker"]
    assert payload["grids"] == ["G1", "G2"]
    assert payload["department"] == "health"
    assert payload["iss"] == "gridhub"
    assert payload["exp"] - payload["iat"] == 15 * 60
    # The server with the same data dir accepts it.
    assert TokenVerifier(Settings(data_dir=data)).verify(text).grid_codes == ("G1", "G2")

    again = runner.invoke(token, ["leader", "--sub", "alice"], env=cli_env(data))
    assert again.exit_code == 0, again.output
    assert again.stderr == ""
    second = jwt.decode(again.stdout.strip(), secret, algorithms=["HS256"], audience="gridhub-api")
    assert second["sub"] == "alice" and "grids" not in second

    bad = runner.invoke(token, ["leader", "--ttl", "forever"], env=cli_env(data))
    assert bad.exit_code == 2 and "invalid duration" in bad.output
    assert runner.invoke(token, [], env=cli_env(data)).exit_code == 2


def test_the_token_command_uses_the_configured_secret(tmp_path: Path) -> None:
    env = {"GRIDHUB_DATA_DIR": str(tmp_path / "data"), "GRIDHUB_JWT_SECRET": SECRET}
    result = CliRunner().invoke(token, ["leader"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert not (tmp_path / "data").exists()
    jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"], audience="gridhub-api")
    short = CliRunner().invoke(token, ["leader"], env={**env, "GRIDHUB_JWT_SECRET": "short"})
    assert short.exit_code == 1 and "shorter than 32 bytes" in short.output


async def invoke(args: list[str], data_dir: Path) -> Result:
    """Run an apikey subcommand in a thread: it runs its own event loop (asyncio.run)."""
    return await asyncio.to_thread(CliRunner().invoke, apikey, args, env=cli_env(data_dir))


async def test_the_apikey_commands(
    db: Database, world: World, hs_db: Settings, tmp_path: Path
) -> None:
    url = ["--db", hs_db.database_url]
    created = await invoke(
        [
            "create",
            *url,
            "--name",
            "health-sys",
            "--role",
            "dept_officer",
            "--department",
            "health",
            "--grid",
            "C1",
        ],
        tmp_path,
    )
    assert created.exit_code == 0, created.output
    assert "will not be shown again" in created.stderr
    plain = created.stdout.strip()
    assert plain.startswith("ghk_") and "\n" not in plain
    viewer = await authenticate(
        db, TokenVerifier(hs_db), authorization=f"Bearer {plain}", role=None
    )
    assert viewer.subject == "apikey:health-sys"
    assert viewer.department_id == world.departments["health"].id
    assert viewer.grid_paths == (world.grids["C1"].path,)

    listed = await invoke(["list", *url], tmp_path)
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "ROLE",
        "DEPARTMENT",
        "GRIDS",
        "CREATED",
        "LAST",
        "USED",
        "REVOKED",
    ]
    assert lines[1].split()[:4] == ["health-sys", "dept_officer", "health", "C1"]
    assert lines[1].rstrip().endswith("-")  # not revoked
    async with db.reader() as session:
        stored = await session.scalar(select(ApiKey).where(ApiKey.name == "health-sys"))
    assert stored is not None
    assert stored.secret_hash not in listed.stdout and plain not in listed.stdout

    duplicate = await invoke(["create", *url, "--name", "health-sys", "--role", "r"], tmp_path)
    assert duplicate.exit_code == 1
    assert "already exists [CONFLICT]" in duplicate.output
    unknown = await invoke(
        ["create", *url, "--name", "n", "--role", "r", "--department", "nowhere"], tmp_path
    )
    assert unknown.exit_code == 1 and "unknown department code" in unknown.output

    revoked = await invoke(["revoke", *url, "health-sys"], tmp_path)
    assert revoked.exit_code == 0, revoked.output
    assert "revoked" in revoked.stdout
    with fails("API key revoked"):
        await authenticate(db, TokenVerifier(hs_db), authorization=f"Bearer {plain}", role=None)
    listed = await invoke(["list", *url], tmp_path)
    assert not listed.stdout.splitlines()[1].rstrip().endswith("-")
    missing = await invoke(["revoke", *url, "nobody"], tmp_path)
    assert missing.exit_code == 1 and "no API key named 'nobody' [NOT_FOUND]" in missing.output


async def test_the_apikey_commands_need_a_migrated_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    result = await invoke(["list", "--db", url], tmp_path)
    assert result.exit_code == 1
    assert "run `gridhub db upgrade` first" in result.output
    await upgrade(url)
    result = await invoke(["list", "--db", url], tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "No API keys."
