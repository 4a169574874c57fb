"""Settings: flags, then ``HEALER_*`` environment variables, then a YAML file.

``KAFKA_BOOTSTRAP_SERVERS`` is honoured when ``HEALER_BOOTSTRAP_SERVERS`` is
unset. Secrets (API tokens, Triton auth) are read from files or env and are
never logged: they are ``SecretStr``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from healer.durations import parse_duration
from healer.engine import PROTECTED_NAMESPACES, EngineSettings
from healer.policy import Budget


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
        p = Path(self.path)
        if not p.is_file():
            raise ValueError(f"config file {self.path} does not exist")
        data = yaml.safe_load(p.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"config file {self.path} must be a mapping")
        return data


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEALER_", extra="forbid", populate_by_name=True)

    app_id: str = Field(default="healer", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")
    bootstrap_servers: str = ""
    policies: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["policies"])
    http_port: int = Field(default=8080, ge=0, le=65535)
    http_host: str = "0.0.0.0"
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
    api_token: SecretStr | None = None
    api_token_file: str | None = None
    webhook_token: SecretStr | None = None
    webhook_token_file: str | None = None
    triton_auth_header: str | None = None
    triton_auth_value: SecretStr | None = None
    kubeconfig: str | None = None
    kube_context: str | None = None
    allowed_namespaces: Annotated[list[str] | None, NoDecode] = None
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

    @field_validator("policies", "protected_namespaces", "allowed_namespaces", mode="before")
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

    def api_tokens(self) -> tuple[str | None, str | None]:
        """(API token, webhook token); the webhook falls back to the API token."""
        api = self._secret(self.api_token, self.api_token_file)
        hook = self._secret(self.webhook_token, self.webhook_token_file) or api
        return api, hook

