"""Named tokens, identities and roles (healer.identity) and how settings build them.

Who may do what (table), tokens file errors that name the entry and never show a token, the
single-token shorthands, the start-up refusal without tokens, and settings errors that never
show a value (pydantic's own messages do)."""

from __future__ import annotations

import hashlib
import traceback
from pathlib import Path
from typing import Any

import pytest

from healer.identity import (
    ANONYMOUS,
    Identity,
    Refusal,
    Role,
    TokenConfigError,
    TokenTable,
    authorize,
    credential,
    parse_tokens_file,
    startup_problem,
)
from healer.settings import Settings, SettingsError

HOOK = "hook-5a1b2c3d4e5f60718293"
ALICE = "alice-0f1e2d3c4b5a69788796"
ROOT = "root-99aa88bb77cc66dd55ee"
OPS = "ops-1234567890abcdef1234"
SECRET = "s3cr3t-Value-that-must-never-print"


def digest(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def table(allow_anonymous: bool = False) -> TokenTable:
    creds, plain = parse_tokens_file({"tokens": [
        {"identity": "alertmanager", "roles": ["ingest"], "digest": digest(HOOK)},
        {"identity": "alice", "roles": ["approve"], "token": ALICE},
        {"identity": "ops-bot", "roles": ["operate"], "digest": digest(OPS)},
        {"identity": "root", "roles": ["admin"], "token": ROOT},
    ]}, "tokens.yaml")
    return TokenTable.build(creds, allow_anonymous=allow_anonymous, secrets=plain)


# presented token, role -> identity name, or the refusal status
CASES: list[tuple[str | None, Role, str | int]] = [
    (HOOK, "ingest", "alertmanager"),
    (HOOK, "approve", 403),  # the Alertmanager receiver's token cannot approve
    (HOOK, "operate", 403),
    (ALICE, "approve", "alice"),
    (ALICE, "ingest", 403),
    (ALICE, "operate", 403),
    (OPS, "operate", "ops-bot"),
    (OPS, "approve", 403),
    (ROOT, "ingest", "root"),  # admin implies every role
    (ROOT, "approve", "root"),
    (ROOT, "operate", "root"),
    (None, "ingest", 401),
    (None, "approve", 401),
    ("not-a-known-token-at-all", "ingest", 401),
    (ALICE + "x", "approve", 401),
    (ALICE[:-1], "approve", 401),
    ("", "approve", 401),
]


@pytest.mark.parametrize(("presented", "role", "want"), CASES)
def test_who_may_do_what(presented: str | None, role: Role, want: str | int) -> None:
    got = authorize(table(), presented, role, "approve")
    if isinstance(want, str):
        assert isinstance(got, Identity) and got.name == want and got.actor == f"user:{want}"
    else:
        assert isinstance(got, Refusal) and got.status == want


def test_refusal_reasons_are_fixed_text_and_name_the_identity() -> None:
    t = table()
    assert authorize(t, None, "approve", "approve") == Refusal(
        401, "missing bearer token: send Authorization: Bearer <token> of an identity with role approve",
        "unauthenticated approve attempt")
    bad = authorize(t, "wrong-token-0123456789", "approve", "approve")
    assert isinstance(bad, Refusal) and bad.reason == "approve attempt with an invalid token"
    hook = authorize(t, HOOK, "approve", "approve")
    assert isinstance(hook, Refusal) and hook.identity is not None and hook.identity.name == "alertmanager"
    assert hook.reason == "approve attempt by alertmanager refused: needs role approve"
    assert "needs role approve" in hook.message or "that needs role approve" in hook.message


@pytest.mark.parametrize(("presented", "role", "want"), [
    (None, "ingest", "anonymous"),  # --insecure-no-auth opens ingest only
    (None, "approve", 401),
    (None, "operate", 401),
    ("wrong-token-0123456789", "ingest", 401),  # a wrong token is still wrong
    (ALICE, "approve", "alice"),
])
def test_insecure_no_auth(presented: str | None, role: Role, want: str | int) -> None:
    got = authorize(table(allow_anonymous=True), presented, role, "x")
    if isinstance(want, str):
        assert isinstance(got, Identity) and got.name == want
    else:
        assert isinstance(got, Refusal) and got.status == want
    assert ANONYMOUS.roles == frozenset({"ingest"})


def test_no_tokens_refuses_to_start_unless_insecure() -> None:
    problem = startup_problem(TokenTable())
    assert problem is not None and "HEALER_TOKENS_FILE" in problem and "--insecure-no-auth" in problem
    assert startup_problem(TokenTable(allow_anonymous=True)) is None
    assert startup_problem(table()) is None


def test_secrets_are_the_literal_tokens_only() -> None:
    assert set(table().secrets) == {ALICE, ROOT}


def entry(**kw: Any) -> dict[str, Any]:
    return {"identity": "alice", "roles": ["approve"], "token": SECRET, **kw}


BAD_FILES: list[tuple[str, Any, str]] = [
    ("not a mapping", [entry()], "must be a mapping with one key, tokens"),
    ("extra top-level key", {"tokens": [entry()], SECRET: 1}, "must be a mapping with one key, tokens"),
    ("empty", {"tokens": []}, "tokens is empty"),
    ("entry not a mapping", {"tokens": [SECRET]}, "entry 1: must be a mapping"),
    ("unknown field (maybe a pasted token)", {"tokens": [{**entry(), SECRET: "x"}]}, "entry 1: unknown field"),
    ("unknown role", {"tokens": [entry(roles=["aprove"])]}, "unknown role 'aprove'; roles are ingest"),
    ("roles not a list", {"tokens": [entry(roles="approve")]}, "roles must be a non-empty list"),
    ("no roles", {"tokens": [entry(roles=[])]}, "roles must be a non-empty list"),
    ("bad identity", {"tokens": [entry(identity="alice smith")]}, "identity must be 1-64 characters"),
    ("token in the identity field", {"tokens": [entry(identity=SECRET + " x")]}, "identity must be"),
    ("reserved identity", {"tokens": [entry(identity="anonymous")]}, "identity 'anonymous' is reserved"),
    ("short token", {"tokens": [entry(token="s3cr3t")]}, "shorter than 16 characters"),
    ("token with a space", {"tokens": [entry(token=SECRET + " x")]}, "must be a bearer token"),
    ("token not a string", {"tokens": [entry(token=12345678901234567890)]}, "must be a string (quote it"),
    ("token and digest", {"tokens": [entry(digest=digest(SECRET))]}, "exactly one of token"),
    ("neither", {"tokens": [{"identity": "alice", "roles": ["approve"]}]}, "exactly one of token"),
    ("bad digest", {"tokens": [{"identity": "a", "roles": ["admin"], "digest": SECRET}]},
     "digest must be sha256: followed by 64"),
    ("same token twice", {"tokens": [entry(), entry(identity="bob")]},
     "entry 2 has the same token as tokens.yaml entry 1"),
    ("same token as digest and literal", {"tokens": [entry(), {"identity": "bob", "roles": ["ingest"],
                                                               "digest": digest(SECRET)}]}, "same token"),
    ("same identity twice", {"tokens": [entry(), entry(token=SECRET + "2")]},
     "entry 2 defines the same identity as tokens.yaml entry 1"),
]


@pytest.mark.parametrize(("name", "data", "message"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_tokens_files_name_the_entry_and_never_show_the_token(name: str, data: Any, message: str) -> None:
    with pytest.raises(TokenConfigError) as err:
        creds, _ = parse_tokens_file(data, "tokens.yaml")
        TokenTable.build(creds)
    text = str(err.value)
    assert message in text
    assert text.startswith("tokens.yaml")
    assert "s3cr3t" not in text and SECRET not in text


def test_shorthand_credentials() -> None:
    c = credential(SECRET, "api", {"approve", "operate"}, "HEALER_API_TOKEN")
    assert c.identity == Identity("api", frozenset({"approve", "operate"}))
    assert SECRET not in repr(c)
    with pytest.raises(TokenConfigError, match="HEALER_API_TOKEN: token is shorter") as err:
        credential("s3cr3t-x", "api", {"approve"}, "HEALER_API_TOKEN")
    assert "s3cr3t" not in str(err.value)


# ---------------------------------------------------------------------------- settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith("HEALER_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_settings_build_the_table_from_file_and_shorthands(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "tokens.yaml"
    f.write_text(f"tokens:\n  - {{identity: alice, roles: [approve], digest: '{digest(ALICE)}'}}\n")
    hook_file = tmp_path / "hook"
    hook_file.write_text(HOOK + "\n")
    clean_env.setenv("HEALER_TOKENS_FILE", str(f))
    clean_env.setenv("HEALER_API_TOKEN", OPS)
    clean_env.setenv("HEALER_WEBHOOK_TOKEN_FILE", str(hook_file))
    t = Settings().token_table()
    assert {i.name: set(i.roles) for i in t.identities()} == {
        "alice": {"approve"}, "api": {"approve", "operate"}, "webhook": {"ingest"}}
    assert t.allow_anonymous is False
    assert authorize(t, HOOK, "approve", "approve") == Refusal(  # the webhook token no longer approves
        403, "identity webhook may not approve: that needs role approve (it has ingest)",
        "approve attempt by webhook refused: needs role approve", Identity("webhook", frozenset({"ingest"})))
    assert isinstance(authorize(t, OPS, "ingest", "alert webhook"), Refusal)  # nor the API token ingests


def test_webhook_token_does_not_fall_back_to_the_api_token(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("HEALER_API_TOKEN", OPS)
    t = Settings().token_table()
    assert [i.name for i in t.identities()] == ["api"]
    assert isinstance(authorize(t, OPS, "ingest", "alert webhook"), Refusal)


def test_same_token_for_api_and_webhook_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("HEALER_API_TOKEN", SECRET)
    clean_env.setenv("HEALER_WEBHOOK_TOKEN", SECRET)
    with pytest.raises(TokenConfigError, match="HEALER_WEBHOOK_TOKEN has the same token as HEALER_API_TOKEN") as e:
        Settings().token_table()
    assert SECRET not in str(e.value)


def test_tokens_file_errors(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("HEALER_TOKENS_FILE", str(tmp_path / "missing.yaml"))
    with pytest.raises(TokenConfigError, match=r"missing.yaml cannot be read.*HEALER_TOKENS_FILE"):
        Settings().token_table()
    broken = tmp_path / "broken.yaml"
    broken.write_text(f'tokens:\n  - identity: alice\n    token: "{SECRET}\n    roles: [approve\n')
    clean_env.setenv("HEALER_TOKENS_FILE", str(broken))
    with pytest.raises(TokenConfigError) as e:
        Settings().token_table()
    assert "is not valid YAML at line" in str(e.value) and SECRET not in str(e.value)
    clean_env.setenv("HEALER_TOKENS_FILE", "")
    clean_env.setenv("HEALER_API_TOKEN_FILE", str(tmp_path / "nope"))
    with pytest.raises(TokenConfigError, match=r"HEALER_API_TOKEN_FILE .*nope cannot be read"):
        Settings().token_table()


def test_insecure_no_auth_setting(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("HEALER_INSECURE_NO_AUTH", "true")
    t = Settings().token_table()
    assert t.allow_anonymous and startup_problem(t) is None
    assert Settings(insecure_no_auth=False).token_table().allow_anonymous is False


def test_default_bind_is_loopback(clean_env: pytest.MonkeyPatch) -> None:
    assert Settings().http_host == "127.0.0.1"


CONFIG_ERRORS: list[tuple[str, str, str]] = [
    ("typo in a secret's key", f'api_tokn: "{SECRET}"\n', "api_tokn: unknown setting; did you mean api_token?"),
    ("secret in a number", f'http_port: "{SECRET}"\n', "http_port: Input should be a valid integer"),
    ("secret in a duration", f'http_body_timeout: "{SECRET}"\n', "http_body_timeout: Value error, not a duration"),
    ("secret in a list", f'kafka_sasl_mechanism: "{SECRET}"\n', "kafka_sasl_mechanism: Input should be"),
    ("secret in a bad SecretStr", "api_token: [1, 2]\n", "api_token: Input should be a valid string"),
    ("broken YAML around a secret", f'webhook_token: "{SECRET}\nhttp_port: [\n', "is not valid YAML at line"),
    ("not a mapping", f"- {SECRET}\n", "must be a mapping of settings"),
]


@pytest.mark.parametrize(("name", "text", "message"), CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS])
def test_config_file_errors_never_show_the_value(name: str, text: str, message: str,
                                                  clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "healer.yaml"
    cfg.write_text(text)
    clean_env.setenv("HEALER_CONFIG", str(cfg))
    with pytest.raises(SettingsError) as err:
        Settings()
    out = str(err.value)
    assert message in out and str(cfg) in out
    assert "s3cr3t" not in out
    # an uncaught error prints its chain: the ValidationError (which quotes values) must not be in it
    assert "s3cr3t" not in "".join(traceback.format_exception(err.value))


def test_env_errors_never_show_the_value(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("HEALER_TOPIC_PARTITIONS", SECRET)
    clean_env.setenv("HEALER_HTTP_IDLE_TIMEOUT", SECRET)
    with pytest.raises(SettingsError) as err:
        Settings(http_port=SECRET)
    out = str(err.value)
    assert "HEALER_TOPIC_PARTITIONS: Input should be a valid integer" in out
    assert "HEALER_HTTP_IDLE_TIMEOUT: Value error, not a duration" in out
    assert "setting http_port: Input should be a valid integer" in out
    assert "s3cr3t" not in out and "s3cr3t" not in "".join(traceback.format_exception(err.value))


@pytest.mark.parametrize("value", ["0s", "0", "-1s", "fast"])
def test_http_timeouts_must_be_positive_durations(value: str, clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="http_header_timeout"):
        Settings(http_header_timeout=value)


def test_http_limit_defaults(clean_env: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert (s.seconds("http_header_timeout"), s.seconds("http_idle_timeout"), s.seconds("http_body_timeout"),
            s.http_max_connections) == (10.0, 30.0, 30.0, 256)
    assert s.refusal_rule().burst == 10 and s.refusal_rule().window.total_seconds() == 10
