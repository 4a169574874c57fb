"""The OpenAPI 3.0 document of the worker's HTTP API, served at ``/api/v1/openapi.json``.

``streams.http`` serves it; the schemathesis test fuzzes a live worker
against it. Keep it in step with the handlers in ``streams.http`` and with
docs/api.md.
"""

from __future__ import annotations

import copy
from typing import Any

from healer import __version__

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "what went wrong and what to do"}},
}


def _json(schema: dict[str, Any] | str, description: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"} if isinstance(schema, str) else schema
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _err(description: str) -> dict[str, Any]:
    return _json("Error", description)


_UNAVAILABLE = _err("Kafka did not answer or ack in time; retry later (Alertmanager does)")
_UNAUTHORIZED = _err("missing or invalid bearer token (the attempt is audited as event.rejected)")
_FORBIDDEN = _err("the token's identity lacks the role this needs (audited)")
_TIMEOUT = _err("the request body did not arrive within http_body_timeout (the connection is closed)")

_DECISION_RESPONSES: dict[str, Any] = {
    "202": _json("DecisionSent", "the decision was produced to {app}.approvals and acked; "
                 "the worker applies it and audits action.approved/denied"),
    "400": _err("invalid body or action id"),
    "401": _UNAUTHORIZED,
    "403": _err("the token's identity lacks role approve (audited)"),
    "404": _err("no approval was ever requested for this action id"),
    "408": _TIMEOUT,
    "409": _err("the action is already approved, denied or expired"),
    "413": _err("body larger than 1 MiB"),
    "503": _UNAVAILABLE,
}

_ACTION_ID = {
    "name": "action_id", "in": "path", "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"},
    "description": "the action id from GET /api/v1/approvals or the audit trail",
}

_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}

_DOC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "healer worker API",
        "version": __version__,
        "description": (
            "Alertmanager webhook receiver, Prometheus remote-write receiver, approvals, health and "
            "metrics of one healer worker. "
            "State-changing endpoints need `Authorization: Bearer <token>`; see docs/api.md."
        ),
    },
    "servers": [{"url": "/"}],
    "paths": {
        "/healthz": {
            "get": {
                "summary": "liveness: the process is up and its last broker check succeeded",
                "operationId": "healthz",
                "responses": {
                    "200": _json("Health", "up (`status` ok, or `starting` before the first broker check)"),
                    "503": _json("Health", "the last broker check failed"),
                },
            },
        },
        "/readyz": {
            "get": {
                "summary": "readiness: broker reachable, partitions assigned, tables recovered",
                "operationId": "readyz",
                "responses": {
                    "200": _json("Readiness", "ready"),
                    "503": _json("Readiness", "not ready; the fields say which condition is missing"),
                },
            },
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format)",
                "operationId": "metrics",
                "responses": {
                    "200": {"description": "metrics (docs/metrics.md)",
                            "content": {"text/plain": {"schema": {"type": "string"}}}},
                },
            },
        },
        "/api/v1/openapi.json": {
            "get": {
                "summary": "this document",
                "operationId": "openapi",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3 document")},
            },
        },
        "/api/v1/alerts": {
            "post": {
                "summary": "Alertmanager webhook receiver",
                "description": (
                    "Accepts an Alertmanager webhook payload (version 4) or one alert object, and "
                    "produces it to `{app}.alerts` keyed by target; answers 200 only after the broker "
                    "acked (acks=all), 503 otherwise so Alertmanager retries. A payload whose alerts "
                    "name several targets is split into one record per target key."
                ),
                "operationId": "postAlerts",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"oneOf": [
                        {"$ref": "#/components/schemas/AlertmanagerPayload"},
                        {"$ref": "#/components/schemas/Alert"},
                    ]}}},
                },
                "responses": {
                    "200": _json("Accepted", "acked by the broker"),
                    "400": _err("not JSON or not an Alertmanager v4 payload / alert object; not retried"),
                    "401": _UNAUTHORIZED,
                    "403": _FORBIDDEN,
                    "408": _TIMEOUT,
                    "413": _err("larger than 1 MiB"),
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/api/v1/write": {
            "post": {
                "summary": "Prometheus remote write 1.0 receiver",
                "description": (
                    "Accepts a snappy-compressed protobuf prometheus.WriteRequest (remote write 1.0), keeps "
                    "the series some loaded metric policy could match and produces their samples to "
                    "`{app}.metrics`, one record per destination partition; answers 200 only after the "
                    "broker acked, 503 otherwise so the sender retries. See docs/remote-write.md."
                ),
                "operationId": "remoteWrite",
                "security": [{"bearer": []}, {}],
                "requestBody": {
                    "required": True,
                    "content": {media: {"schema": {"type": "string", "format": "binary"}}
                                for media in ("application/x-protobuf", "application/octet-stream")},
                },
                "responses": {
                    "200": _json("WriteAccepted", "acked by the broker (or nothing to produce)"),
                    "400": _err("bad snappy, bad protobuf, or larger than 4 MiB compressed / 16 MiB "
                                "decompressed; nothing produced; not retried"),
                    "401": _UNAUTHORIZED,
                    "415": _err("not remote write 1.0: remote write 2.0, gzip/zstd, another version"),
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/api/v1/approvals": {
            "get": {
                "summary": "actions waiting for approval (folded from the audit topic)",
                "operationId": "listApprovals",
                "parameters": [{
                    "name": "all", "in": "query", "required": False,
                    "schema": {"type": "string", "enum": ["0", "1", "true", "false"]},
                    "description": "1: decided and expired approvals too",
                }],
                "responses": {
                    "200": _json("ApprovalList", "approvals, oldest request first"),
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/api/v1/approvals/{action_id}/approve": {
            "post": {
                "summary": "approve a pending action",
                "operationId": "approve",
                "security": [{"bearer": []}],
                "parameters": [_ACTION_ID],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ApproveBody"}}}},
                "responses": _DECISION_RESPONSES,
            },
        },
        "/api/v1/approvals/{action_id}/deny": {
            "post": {
                "summary": "deny a pending action (a reason is required)",
                "operationId": "deny",
                "security": [{"bearer": []}],
                "parameters": [_ACTION_ID],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/DenyBody"}}}},
                "responses": _DECISION_RESPONSES,
            },
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "a token of an identity with the role the endpoint needs: ingest "
                                      "(alerts, write), approve (approve/deny), admin (all); HEALER_TOKENS_FILE, "
                                      "HEALER_WEBHOOK_TOKEN(_FILE) (ingest), HEALER_API_TOKEN(_FILE) (approve)"},
        },
        "schemas": {
            "Error": _ERROR,
            "Health": {
                "type": "object", "required": ["status"],
                "properties": {
                    "status": {"type": "string", "enum": ["ok", "starting", "degraded"]},
                    "broker": {"type": "boolean", "nullable": True},
                    "checked_at": {"type": "string", "nullable": True},
                },
            },
            "Readiness": {
                "type": "object", "required": ["ready"],
                "properties": {k: {"type": "boolean"} for k in
                               ("broker", "assigned", "recovered", "rebalancing", "ready")},
            },
            "Alert": {
                "type": "object", "required": ["labels"],
                "properties": {
                    "status": {"type": "string", "enum": ["firing", "resolved"]},
                    "labels": _LABELS,
                    "annotations": _LABELS,
                    "startsAt": {"type": "string", "format": "date-time"},
                    "endsAt": {"type": "string", "format": "date-time"},
                    "generatorURL": {"type": "string"},
                    "fingerprint": {"type": "string"},
                },
            },
            "AlertmanagerPayload": {
                "type": "object", "required": ["version", "alerts"],
                "properties": {
                    "version": {"type": "string", "enum": ["4"]},
                    "groupKey": {"type": "string"},
                    "truncatedAlerts": {"type": "integer", "minimum": 0},
                    "status": {"type": "string", "enum": ["firing", "resolved"]},
                    "receiver": {"type": "string"},
                    "groupLabels": _LABELS,
                    "commonLabels": _LABELS,
                    "commonAnnotations": _LABELS,
                    "externalURL": {"type": "string"},
                    "alerts": {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}},
                },
            },
            "Accepted": {
                "type": "object", "required": ["status", "alerts", "records"],
                "properties": {
                    "status": {"type": "string", "enum": ["accepted"]},
                    "alerts": {"type": "integer", "minimum": 0},
                    "records": {"type": "integer", "minimum": 0,
                                "description": "Kafka records produced (one per target key)"},
                },
            },
            "WriteAccepted": {
                "type": "object", "required": ["status", "accepted", "dropped", "records"],
                "properties": {
                    "status": {"type": "string", "enum": ["accepted"]},
                    "accepted": {"type": "integer", "minimum": 0, "description": "samples produced"},
                    "dropped": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1},
                                "description": "samples dropped, by reason (no_policy, stale, ...)"},
                    "records": {"type": "integer", "minimum": 0,
                                "description": "Kafka records produced (one per destination partition)"},
                },
            },
            "Approval": {
                "type": "object", "required": ["action_id", "state"],
                "properties": {
                    "action_id": {"type": "string"},
                    "state": {"type": "string", "enum": ["pending", "approved", "denied", "expired"]},
                    "requested_at": {"type": "string"},
                    "policy": {"type": "string", "nullable": True},
                    "target": {"type": "object", "nullable": True},
                    "use": {"type": "string", "nullable": True},
                    "with": {"type": "object"},
                    "actor": {"type": "string", "nullable": True},
                    "reason": {"type": "string", "nullable": True},
                    "decided_at": {"type": "string", "nullable": True},
                },
            },
            "ApprovalList": {
                "type": "object", "required": ["approvals"],
                "properties": {"approvals": {"type": "array", "items": {"$ref": "#/components/schemas/Approval"}}},
            },
            "ApproveBody": {
                "type": "object",
                "properties": {
                    "actor": {"type": "string", "deprecated": True,
                              "description": "ignored: the actor is the token's identity (user:IDENTITY)"},
                    "reason": {"type": "string", "maxLength": 2000},
                },
            },
            "DenyBody": {
                "type": "object", "required": ["reason"],
                "properties": {
                    "actor": {"type": "string", "deprecated": True,
                              "description": "ignored: the actor is the token's identity (user:IDENTITY)"},
                    "reason": {"type": "string", "minLength": 1, "maxLength": 2000},
                },
            },
            "DecisionSent": {
                "type": "object", "required": ["action_id", "decision", "actor", "status"],
                "properties": {
                    "action_id": {"type": "string"},
                    "decision": {"type": "string", "enum": ["approve", "deny"]},
                    "actor": {"type": "string", "description": "the audited actor: user:IDENTITY of the token"},
                    "reason": {"type": "string", "nullable": True},
                    "status": {"type": "string", "enum": ["sent"]},
                },
            },
        },
    },
}


def document() -> dict[str, Any]:
    """A fresh copy of the document (callers may not change the shared one)."""
    return copy.deepcopy(_DOC)
