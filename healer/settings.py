"""Settings: flags, then ``HEALER_*`` environment variables, then a YAML file.

``KAFKA_BOOTSTRAP_SERVERS`` is honoured when ``HEALER_BOOTSTRAP_SERVERS`` is
unset. Secrets (API tokens, Triton auth) are read from files or env and are
never logged: they are ``SecretStr``. A settings error never shows a value
(pydantic's own messages do): :class:`SettingsError` names the setting, where
it came from and what is wrong.
"""

from __future__ import annotations

import difflib
import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from healer.durations import parse_duration
from healer.engine import PROTECTED_NAMESPACES, EngineSettings
from healer.execguard import ExecutionRules
from healer.identity import (
    SHORTHANDS,
    Credential,
    TokenConfigError,
    TokenTable,
    credential,
    parse_tokens_file,
)
from healer.keys import Keyring, KeyringError
from healer.keys import parse as parse_keyring
from healer.policy import Budget
from healer.refusals import RefusalRule

MAX_TOKENS_FILE_BYTES = 1024 * 1024


class SettingsError(ValueError):
    """Settings that do not load; the message names the setting and its source, never its value."""


def yaml_file(path: str, what: str) -> Any:
    """The parsed YAML of a settings-like file; errors name the line, never show its text."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_TOKENS_FILE_BYTES:
            raise SettingsError(f"{what} {path} is larger than 1 MiB")
        text = p.read_text()
    except OSError as exc:
        raise SettingsError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        # str(exc) quotes the offending line, which may hold a secret: position and problem only
        mark = exc.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SettingsError(f"{what} {path} is not valid YAML{at}: {exc.problem or 'syntax error'}") from None
    except yaml.YAMLError:
        raise SettingsError(f"{what} {path} is not valid YAML") from None


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max: int = Field(ge=1)
    per: str = "1m"

    @field_validator("per")
    @classmethod
    def _per(cls, v: str) -> str:
        parse_duration(v)
        return v


class _YamlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], path: str | None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if not self.path:
            return {}
        if not Path(self.path).is_file():
            raise SettingsError(f"config file {self.path} (HEALER_CONFIG) does not exist")
        data = yaml_file(self.path, "config file") or {}
        if not isinstance(data, dict):
            raise SettingsError(f"config file {self.path} (HEALER_CONFIG) must be a mapping of settings")
        return data


def _without_values(exc: ValidationError, given: dict[str, Any]) -> str:
    """pydantic's errors with the input values taken out, each naming where the setting came from."""
    fields = sorted(Settings.model_fields)
    config = os.environ.get("HEALER_CONFIG")
    lines = []
    for err in exc.errors(include_url=False, include_context=False):
        loc = [str(p) for p in err["loc"]]
        name = loc[0] if loc else ""
        env = f"HEALER_{name.upper()}"
        if name in given:
            where = f"setting {'.'.join(loc)}"
        elif env in os.environ:
            where = f"{env}" + (f" ({'.'.join(loc[1:])})" if len(loc) > 1 else "")
        elif config:
            where = f"config file {config}: {'.'.join(loc)}"
        else:
            where = ".".join(loc) or "settings"
        if err["type"] == "extra_forbidden":
            near = difflib.get_close_matches(name, fields, n=1)
            msg = "unknown setting" + (f"; did you mean {near[0]}?" if near else " (the settings are the fields of healer/settings.py)")
        else:
            msg = str(err["msg"])
            value = err.get("input")
            for v in (value, repr(value)) if isinstance(value, str) and len(value) >= 3 else ():
                msg = msg.replace(v, "<value>")  # a validator of ours may quote it
        lines.append(f"{where}: {msg}")
    return "invalid settings (values not shown):\n  " + "\n  ".join(lines)


def _positive_duration(v: str) -> str:
    try:
        d = parse_duration(v)
    except ValueError:
        raise ValueError("not a duration (use a number with a unit, e.g. 500ms, 10s, 5m)") from None
    if d <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return v


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEALER_", extra="forbid", populate_by_name=True)

    app_id: str = Field(default="healer", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")
    bootstrap_servers: str = ""
    policies: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["policies"])
    http_port: int = Field(default=8080, ge=0, le=65535)
    # loopback unless told otherwise: the image and the chart set 0.0.0.0 themselves
    http_host: str = "127.0.0.1"
    # HTTP server bounds (docs/api.md, "Limits")
    http_header_timeout: str = "10s"  # from connect to the first request's complete headers
    http_idle_timeout: str = "30s"  # between requests on a kept-alive connection
    http_body_timeout: str = "30s"  # to receive a request body
    http_max_connections: int = Field(default=256, ge=1, le=100_000)
    # refused requests audited one by one per window; the rest become one aggregated entry
    http_refusal_window: str = "10s"
    http_refusal_burst: int = Field(default=10, ge=1, le=10_000)
    dry_run: bool = False
    paused: bool = False
    rate_limit: RateLimit | None = None
    dedup_window: str = "60s"
    protected_namespaces: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(PROTECTED_NAMESPACES))
    topic_partitions: int = Field(default=6, ge=1, le=1000)
    topic_replicas: int = Field(default=1, ge=1)
    create_topics: bool = True
    # records above this are dead-lettered as oversize (keep it <= the broker's message.max.bytes)
    max_record_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_concurrent_actions: int = Field(default=16, ge=1)
    action_timeout: str = "15m"
    session_timeout: str = "10s"
    instance_id: str = ""
    data_dir: str = ""
    # named tokens: a YAML file of {identity, roles, token | digest} (docs/security.md)
    tokens_file: str | None = None
    # start without any token: unauthenticated alerts are accepted (as identity anonymous)
    insecure_no_auth: bool = False
    api_token: SecretStr | None = None
    api_token_file: str | None = None
    webhook_token: SecretStr | None = None
    webhook_token_file: str | None = None
    triton_auth_header: str | None = None
    triton_auth_value: SecretStr | None = None
    kubeconfig: str | None = None
    kube_context: str | None = None
    allowed_namespaces: Annotated[list[str] | None, NoDecode] = None
    # who may sign commands, and the worker's signing and sealing keys (docs/security.md);
    # unset: {config dir}/healer/{app_id}/keyring.yaml, created by the first worker there
    keyring_file: str | None = None
    # allow-lists: Triton servers (URL patterns) and webhook URLs (prefixes) actions may reach
    triton_servers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: str = "INFO"
    # Kafka TLS / SASL (PLAINTEXT by default; the Helm chart sets these)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: str | None = None

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            # `from None`: the ValidationError (which quotes every input value) must not be shown
            raise SettingsError(_without_values(exc, values)) from None

    @field_validator("http_header_timeout", "http_idle_timeout", "http_body_timeout", "http_refusal_window")
    @classmethod
    def _duration(cls, v: str) -> str:
        return _positive_duration(v)

    @field_validator("policies", "protected_namespaces", "allowed_namespaces", "triton_servers",
                     "webhook_urls", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls, os.environ.get("HEALER_CONFIG")))

    def bootstrap(self) -> str:
        return self.bootstrap_servers or os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "") or "127.0.0.1:9092"

    def topic(self, name: str) -> str:
        return f"{self.app_id}.{name}"

    def engine(self) -> EngineSettings:
        rl = None
        if self.rate_limit is not None:
            rl = Budget(self.rate_limit.max, parse_duration(self.rate_limit.per))
        return EngineSettings(
            paused=self.paused,
            dry_run=self.dry_run,
            rate_limit=rl,
            dedup_window=parse_duration(self.dedup_window),
            protected_namespaces=tuple(self.protected_namespaces),
            allowed_namespaces=tuple(self.allowed_namespaces) if self.allowed_namespaces is not None else None,
        )

    def execution_rules(self) -> ExecutionRules:
        """What the execute stage re-checks on every request (healer.execguard)."""
        return ExecutionRules(
            dry_run=self.dry_run,
            protected_namespaces=tuple(self.protected_namespaces),
            allowed_namespaces=tuple(self.allowed_namespaces) if self.allowed_namespaces is not None else None,
            triton_servers=tuple(self.triton_servers),
            webhook_urls=tuple(self.webhook_urls),
        )

    def keyring_path(self) -> Path:
        """The keyring file: ``keyring_file``, else one per app id under the user's config dir
        (shared by the workers and the CLI on one machine; clusters mount their own)."""
        if self.keyring_file:
            return Path(self.keyring_file)
        base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
        return base / "healer" / self.app_id / "keyring.yaml"

    def keyring(self) -> Keyring:
        """The keyring (healer.keys), read from :meth:`keyring_path`; KeyringError says what is wrong."""
        path = self.keyring_path()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise KeyringError(
                f"no keyring at {path}: start a worker of app id {self.app_id!r} on this machine once "
                "(it creates one), or set HEALER_KEYRING_FILE (docs/security.md)") from None
        except OSError as exc:
            raise KeyringError(f"cannot read the keyring {path}: {exc.strerror}") from None
        return parse_keyring(text, lambda p: Path(p).read_bytes().strip(), str(path))

    def session_timeout_seconds(self) -> float:
        return parse_duration(self.session_timeout).total_seconds()

    def action_timeout_seconds(self) -> float:
        return parse_duration(self.action_timeout).total_seconds()

    def state_dir(self) -> Path:
        base = Path(self.data_dir) if self.data_dir else Path(
            os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")
        ) / "healer"
        return base / self.app_id

    @staticmethod
    def _secret(value: SecretStr | None, path: str | None) -> str | None:
        if value is not None and value.get_secret_value():
            return value.get_secret_value()
        if path:
            text = Path(path).read_text().strip()
            return text or None
        return None

    def kafka_security(self) -> dict[str, Any]:
        """Plain values for Kafka clients (streams.client turns them into client options)."""
        sec: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if "SSL" in self.kafka_security_protocol:
            sec.update(cafile=self.kafka_ssl_cafile, certfile=self.kafka_ssl_certfile,
                       keyfile=self.kafka_ssl_keyfile)
        if self.kafka_security_protocol.startswith("SASL"):
            password = self._secret(self.kafka_sasl_password, self.kafka_sasl_password_file)
            if not self.kafka_sasl_username or not password:
                raise ValueError("SASL needs kafka_sasl_username and kafka_sasl_password(_file)")
            sec.update(sasl_mechanism=self.kafka_sasl_mechanism, sasl_plain_username=self.kafka_sasl_username,
                       sasl_plain_password=password)
        return sec

    def seconds(self, name: str) -> float:
        """A duration setting (``http_body_timeout`` ...) in seconds."""
        return parse_duration(getattr(self, name)).total_seconds()

    def refusal_rule(self) -> RefusalRule:
        return RefusalRule(window=parse_duration(self.http_refusal_window), burst=self.http_refusal_burst)

    def token_table(self) -> TokenTable:
        """Every identity that may call the HTTP API: the tokens file plus the two shorthands.

        ``HEALER_API_TOKEN(_FILE)`` is identity ``api`` (roles approve, operate);
        ``HEALER_WEBHOOK_TOKEN(_FILE)`` is identity ``webhook`` (role ingest). Raises
        :class:`healer.identity.TokenConfigError` naming the source; never shows a token.
        """
        creds: list[Credential] = []
        secrets: list[str] = []
        if self.tokens_file:
            try:
                data = yaml_file(self.tokens_file, "tokens file")
            except SettingsError as exc:
                raise TokenConfigError(f"{exc} (HEALER_TOKENS_FILE)") from None
            creds, secrets = parse_tokens_file(data, f"tokens file {self.tokens_file}")
        pairs = {"HEALER_API_TOKEN": (self.api_token, self.api_token_file),
                 "HEALER_WEBHOOK_TOKEN": (self.webhook_token, self.webhook_token_file)}
        for env, (value, path) in pairs.items():
            where = env if value is not None and value.get_secret_value() else f"{env}_FILE {path}"
            try:
                token = self._secret(value, path)
            except OSError as exc:
                raise TokenConfigError(f"{where} cannot be read: {exc.strerror or exc}") from None
            if token is not None:
                name, roles = SHORTHANDS[env]
                creds.append(credential(token, name, roles, where))
                secrets.append(token)
        return TokenTable.build(creds, allow_anonymous=self.insecure_no_auth, secrets=secrets)

