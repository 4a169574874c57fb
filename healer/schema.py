"""JSON Schema of the policy language, for editors (``healer policy schema``).

Built from the pydantic spec models plus the action catalog: ``use`` is an
enum of the catalog's names and ``with`` is checked against the chosen
action's params model (``if``/``then``), so an editor flags a bad parameter
as the loader would. The output is JSON Schema draft-07 because that is what
yaml-language-server (VS Code, Neovim, JetBrains via LSP) validates with; the
committed copy is ``docs/policy.schema.json`` (a unit test keeps it fresh).
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from healer.catalog import Catalog, default_catalog
from healer.policy import PolicyDoc, SilenceDoc

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
_REF = "#/definitions/{model}"


def policy_schema(catalog: Catalog | None = None) -> dict[str, Any]:
    """One schema accepting a Policy or a Silence document."""
    catalog = catalog or default_catalog()
    body = TypeAdapter(PolicyDoc | SilenceDoc).json_schema(by_alias=True, ref_template=_REF)
    defs: dict[str, Any] = body["$defs"]
    step = defs["StepSpec"]
    step["properties"]["use"]["enum"] = catalog.names()
    rules: list[dict[str, Any]] = []
    for spec in sorted(catalog, key=lambda s: s.name):
        params = spec.params.model_json_schema(by_alias=True, ref_template=_REF)
        for name, sub in params.pop("$defs", {}).items():
            defs.setdefault(name, sub)
        key = spec.params.__name__
        defs.setdefault(key, params)
        kinds = ", ".join(sorted(spec.target_kinds))
        rules.append(
            {
                "if": {"properties": {"use": {"const": spec.name}}, "required": ["use"]},
                "then": {
                    "properties": {
                        "with": {
                            "allOf": [{"$ref": _REF.format(model=key)}],
                            "description": f"{spec.name}: {spec.description} (targets: {kinds})",
                        }
                    },
                },
            }
        )
    step["allOf"] = rules
    for d in defs.values():
        for name, prop in list(d.get("properties", {}).items()):
            d["properties"][name] = _drop_null(prop)
    return {
        "$schema": DRAFT_07,
        "title": "healer policy (healer/v1)",
        "description": "A healer Policy or Silence document; see docs/policies.md.",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "healer/v1"},
            "kind": {"enum": ["Policy", "Silence"]},
        },
        # if/then rather than anyOf: editors report the error inside the right kind
        "if": {"properties": {"kind": {"const": "Silence"}}, "required": ["kind"]},
        "then": {"$ref": _REF.format(model="SilenceDoc")},
        "else": {"$ref": _REF.format(model="PolicyDoc")},
        "definitions": dict(sorted(defs.items())),
    }


def _drop_null(prop: dict[str, Any]) -> dict[str, Any]:
    """``X | None = None`` -> ``X``: writing nothing is how a YAML author says
    "none", and editors report errors inside X instead of "not valid under any
    of the given schemas"."""
    alts = prop.get("anyOf")
    if not (isinstance(alts, list) and len(alts) == 2 and {"type": "null"} in alts):
        return prop
    if prop.get("default") is not None:
        return prop
    [inner] = [a for a in alts if a != {"type": "null"}]
    out = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    if "$ref" in inner:  # draft-07 ignores siblings of $ref: wrap it
        return {**out, "allOf": [inner]}
    return {**out, **inner}


def audit_schema() -> dict[str, Any]:
    """JSON Schema of one sealed ``healer.audit/v1`` record."""
    from healer.audit import AUDIT_KINDS

    obj_or_null = {"type": ["object", "null"]}
    str_or_null = {"type": ["string", "null"]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://healer.dev/schemas/healer.audit.v1.json",
        "title": "healer audit record (healer.audit/v1)",
        "type": "object",
        "required": ["schema", "id", "chain", "seq", "time", "kind", "actor", "prev_hash", "hash"],
        "additionalProperties": False,
        "properties": {
            "schema": {"const": "healer.audit/v1"},
            "id": {"type": "string", "description": "deterministic entry id; a replayed step has the same id"},
            "chain": {"type": "string", "description": "the audit partition this record is chained in"},
            "seq": {"type": "integer", "minimum": 0, "description": "position in the chain, no gaps"},
            "time": {"type": "string", "format": "date-time", "description": "wall-clock time of the step"},
            "kind": {"enum": list(AUDIT_KINDS)},
            "action_id": str_or_null,
            "event": {
                "type": ["object", "null"],
                "properties": {"id": {"type": "string"}, "fingerprint": str_or_null},
                "required": ["id"],
            },
            "policy": {
                "type": ["object", "null"],
                "properties": {"name": {"type": "string"}, "revision": {"type": "string"}},
                "required": ["name", "revision"],
            },
            "target": obj_or_null,
            "use": str_or_null,
            "with": obj_or_null,
            "actor": {"type": "string", "pattern": "^(healer|user:.+)$"},
            "before": obj_or_null,
            "after": obj_or_null,
            "reason": str_or_null,
            "detail": obj_or_null,
            "source": {
                "type": "object",
                "description": "the audit-log partition, offset and (for a record that carried "
                "several entries) index it was sealed from (extension)",
                "properties": {"partition": {"type": "integer"}, "offset": {"type": "integer"},
                               "index": {"type": "integer"},
                               "note": {"type": "boolean", "description": "a sealer's note on foreign "
                                        "records: it stands for no audit-log entry"}},
            },
            "prev_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "kid": {"type": "string", "description": "id of the audit key that made mac (keyed audit)"},
            "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                     "description": "SHA-256 of the canonical JSON of the record without hash and mac"},
            "mac": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                    "description": "HMAC-SHA256 of hash under the audit key kid (keyed audit)"},
        },
    }
