"""JSON Schemas: the policy language (for editors) and the audit record."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from healer.policy import PolicyDoc, SilenceDoc


def policy_schema() -> dict[str, Any]:
    """One schema accepting a Policy or a Silence document."""
    schema = TypeAdapter(PolicyDoc | SilenceDoc).json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "healer policy (healer/v1)"
    return schema
