"""The OpenAPI 3.1 document of the gateway, served at ``/openapi.json``.

Kept next to the handlers it describes; a schemathesis test drives the server from it.
"""

from __future__ import annotations

from typing import Any

from producers.gateway.validation import MAX_BATCH, MAX_LIST_LIMIT, MAX_URL_LENGTH
from schemas.custom_headers import MAX_HEADERS, MAX_TOTAL_BYTES, MAX_VALUE_LENGTH
from schemas.delivery_records import DeliveryStatus
from schemas.event_types import SYSTEM_EVENT_TYPES, EventType
from schemas.filters import MAX_BYTES, MAX_DEPTH, MAX_NODES
from schemas.webhook import RateLimit

_TYPES = [str(t) for t in EventType if t not in SYSTEM_EVENT_TYPES]  # what callers may send


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _problems(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {
            "description": "Problem details naming the field",
            "content": {"application/problem+json": {"schema": _ref("Problem")}},
        }
        for status in statuses
    }


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": "Write only if the webhook is still at this version (its ETag, or *); "
    "otherwise 409 naming If-Match. Without it the write applies to the current version",
    "schema": {"type": "string"},
}
_ETAG = {
    "ETag": {
        "description": "The webhook's version; send it as If-Match to write only that version",
        "schema": {"type": "string"},
    }
}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A repeat with this key (same tenant, within CPEVENTS_IDEMPOTENCY_TTL, on any "
    "gateway) gets the first request's status and body and publishes nothing; the same key "
    "with another body is a 422 naming Idempotency-Key; 409 while the first is still running "
    "past CPEVENTS_IDEMPOTENCY_CLAIM_TIMEOUT",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
}
_TENANT_QUERY = {
    "name": "tenant_id",
    "in": "query",
    "required": False,
    "description": "Admin only: limit to one tenant (a tenant token always sees its own)",
    "schema": {"type": "string"},
}

_FILTER = {
    "type": "object",
    "description": "Payload filter (issue 18): a JSON object mirroring the event's JSON form; a "
    "bare value means equality; operators $eq $neq $in $nin $gt $gte $lt $lte $exist $or $and "
    f"$not. At most {MAX_DEPTH} levels, {MAX_NODES} nodes and {MAX_BYTES} bytes; an invalid "
    "filter is a 422 naming its path (e.g. filter.payload.replicas.$gte)",
    "example": {"instance_id": {"$exist": True}, "payload": {"region": "eu"}},
}

_HEADERS = {
    "type": "object",
    "description": "Custom headers sent with every attempt (issue 18), values stored encrypted "
    f"and never shown again. At most {MAX_HEADERS}, values up to {MAX_VALUE_LENGTH} printable "
    f"ASCII characters, {MAX_TOTAL_BYTES} bytes in all; reserved names (webhook-*, "
    "content-type, content-length, host, user-agent, traceparent, hop-by-hop) are a 422 naming "
    "headers.<name>",
    "maxProperties": MAX_HEADERS,
    "additionalProperties": {"type": "string", "minLength": 1, "maxLength": MAX_VALUE_LENGTH},
    "example": {"X-Api-Key": "k-123"},
}

_RATE_LIMIT = {
    "type": "object",
    "description": "Sends to the webhook at most per_second on average and burst at once "
    "(issue 18); absent: unlimited. Waiting never counts as an attempt",
    "required": ["per_second"],
    "additionalProperties": False,
    "properties": {
        "per_second": {"type": "number", "exclusiveMinimum": 0, "maximum": RateLimit.MAX},
        "burst": {
            "type": "integer",
            "minimum": 1,
            "maximum": RateLimit.MAX,
            "description": "Default: per_second rounded up",
        },
    },
    "example": {"per_second": 10, "burst": 20},
}

_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "field": {"type": "string", "description": "The offending field or header"},
        },
    },
    "EventIn": {
        "type": "object",
        "description": "Ctrl Plane's event JSON; id and timestamp are assigned when left out",
        "required": ["type", "tenant_id"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "description": "TypeID evt_…"},
            "type": {"type": "string", "enum": _TYPES},
            "tenant_id": {"type": "string", "minLength": 1},
            "instance_id": {"type": "string", "description": "TypeID inst_…"},
            "actor_id": {"type": "string"},
            "payload": {"type": "object"},
            "timestamp": {"type": "string", "format": "date-time"},
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["ids"],
        "properties": {"ids": {"type": "array", "items": {"type": "string"}}},
    },
    "WebhookCreate": {
        "type": "object",
        "required": ["url"],
        "additionalProperties": False,
        "properties": {
            "tenant_id": {"type": "string", "minLength": 1, "description": "Default: the token's"},
            "url": {"type": "string", "format": "uri", "maxLength": MAX_URL_LENGTH},
            "events": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Types, '<prefix>.*' or '*'; empty means every event",
            },
            "active": {"type": "boolean"},
            "filter": _FILTER,
            "headers": _HEADERS,
            "rate_limit": _RATE_LIMIT,
        },
    },
    "WebhookUpdate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "format": "uri", "maxLength": MAX_URL_LENGTH},
            "events": {"type": "array", "items": {"type": "string"}},
            "active": {"type": "boolean"},
            "filter": {**_FILTER, "type": ["object", "null"], "description": "null removes it"},
            "headers": {
                **_HEADERS,
                "type": ["object", "null"],
                "description": "Replaces every custom header; null removes them",
            },
            "rate_limit": {
                **_RATE_LIMIT,
                "type": ["object", "null"],
                "description": "null: unlimited",
            },
        },
    },
    "Webhook": {
        "type": "object",
        "required": ["id", "created_at", "updated_at", "tenant_id", "url", "events", "active"],
        "properties": {
            "id": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "tenant_id": {"type": "string"},
            "url": {"type": "string"},
            "events": {"type": "array", "items": {"type": "string"}},
            "active": {"type": "boolean"},
            "filter": {"type": "object", "description": "The payload filter; absent if none"},
            "headers": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Names of the custom headers (values are never shown)",
            },
            "rate_limit": _RATE_LIMIT,
        },
    },
    "WebhookWithSecret": {
        "allOf": [
            _ref("Webhook"),
            {
                "type": "object",
                "required": ["secret"],
                "properties": {
                    "secret": {"type": "string", "description": "Shown only in this answer"}
                },
            },
        ]
    },
    "EventTypeList": {
        "type": "object",
        "required": ["event_types"],
        "properties": {
            "event_types": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type", "subsystem", "topic", "description", "validate"],
                    "properties": {
                        "type": {"type": "string"},
                        "subsystem": {"type": "string"},
                        "topic": {"type": "string"},
                        "description": {"type": "string"},
                        "validate": {
                            "type": "boolean",
                            "description": "POST /v1/events refuses payloads breaking the schema",
                        },
                        "payload_schema": {
                            "type": "object",
                            "description": "JSON Schema (draft 2020-12) of the payload",
                        },
                    },
                },
            }
        },
    },
    "WebhookList": {
        "type": "object",
        "required": ["webhooks"],
        "properties": {"webhooks": {"type": "array", "items": _ref("Webhook")}},
    },
    "Delivery": {
        "type": "object",
        "required": [
            "id",
            "created_at",
            "updated_at",
            "webhook_id",
            "event_id",
            "tenant_id",
            "status",
            "status_code",
            "attempts",
            "duration_ms",
        ],
        "properties": {
            "id": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "webhook_id": {"type": "string"},
            "event_id": {"type": "string"},
            "tenant_id": {"type": "string"},
            "status": {"type": "string", "enum": [str(s) for s in DeliveryStatus]},
            "status_code": {"type": "integer"},
            "attempts": {"type": "integer"},
            "duration_ms": {"type": "number"},
            "next_retry": {"type": "string", "format": "date-time"},
            "error": {"type": "string"},
        },
    },
    "DeliveryList": {
        "type": "object",
        "required": ["deliveries", "next_cursor"],
        "properties": {
            "deliveries": {"type": "array", "items": _ref("Delivery")},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Pass as cursor for the next page; null on the last page",
            },
        },
    },
    "Requeued": {
        "type": "object",
        "required": ["id", "requeued"],
        "properties": {"id": {"type": "string"}, "requeued": {"type": "boolean"}},
    },
}

_WRITE_PROBLEMS = (400, 401, 403, 408, 413, 415, 422, 503)


def document() -> dict[str, Any]:
    """The OpenAPI document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Ctrl Plane Events gateway",
            "version": "1",
            "description": "Event ingest, webhook configuration and delivery queries. "
            "Errors are RFC 7807 problem documents naming the field.",
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/events": {
                "post": {
                    "operationId": "publishEvents",
                    "summary": "Publish one event or a batch; 202 once Kafka acknowledged",
                    "description": "413 naming [i].payload when an event's encoding exceeds "
                    "CPEVENTS_MAX_EVENT_BYTES (nothing of the batch is written); 422 naming "
                    "[i].payload.<path> when a type whose catalog entry says validate gets a "
                    "payload breaking its payload_schema (see /v1/event-types)",
                    "parameters": [_IDEMPOTENCY_KEY],
                    "requestBody": {
                        "required": True,
                        **_json(
                            {
                                "oneOf": [
                                    _ref("EventIn"),
                                    {
                                        "type": "array",
                                        "items": _ref("EventIn"),
                                        "minItems": 1,
                                        "maxItems": MAX_BATCH,
                                    },
                                ]
                            }
                        ),
                    },
                    "responses": {
                        "202": {"description": "Stored in Kafka", **_json(_ref("Accepted"))},
                        **_problems(*_WRITE_PROBLEMS, 409),
                    },
                }
            },
            "/v1/webhooks": {
                "get": {
                    "operationId": "listWebhooks",
                    "parameters": [_TENANT_QUERY],
                    "responses": {
                        "200": {"description": "Webhooks", **_json(_ref("WebhookList"))},
                        **_problems(400, 401, 403, 422),
                    },
                },
                "post": {
                    "operationId": "createWebhook",
                    "requestBody": {"required": True, **_json(_ref("WebhookCreate"))},
                    "description": "422 naming tenant_id past CPEVENTS_MAX_WEBHOOKS_PER_TENANT",
                    "responses": {
                        "201": {
                            "description": "Created",
                            "headers": _ETAG,
                            **_json(_ref("WebhookWithSecret")),
                        },
                        **_problems(*_WRITE_PROBLEMS),
                    },
                },
            },
            "/v1/webhooks/{id}": {
                "parameters": [_ID],
                "get": {
                    "operationId": "getWebhook",
                    "responses": {
                        "200": {
                            "description": "The webhook",
                            "headers": _ETAG,
                            **_json(_ref("Webhook")),
                        },
                        **_problems(401, 404),
                    },
                },
                "patch": {
                    "operationId": "updateWebhook",
                    "parameters": [_IF_MATCH],
                    "requestBody": {"required": True, **_json(_ref("WebhookUpdate"))},
                    "responses": {
                        "200": {
                            "description": "Updated",
                            "headers": _ETAG,
                            **_json(_ref("Webhook")),
                        },
                        **_problems(400, 401, 404, 408, 409, 413, 415, 422, 503),
                    },
                },
                "delete": {
                    "operationId": "deleteWebhook",
                    "parameters": [_IF_MATCH],
                    "responses": {
                        "204": {"description": "Deleted"},
                        **_problems(401, 404, 409, 503),
                    },
                },
            },
            "/v1/webhooks/{id}/rotate-secret": {
                "parameters": [_ID],
                "post": {
                    "operationId": "rotateWebhookSecret",
                    "summary": "New secret; the old one stays valid for the configured overlap",
                    "description": "At most CPEVENTS_MAX_ACTIVE_SECRETS secrets stay active: "
                    "rotating again ends the oldest overlaps. Concurrent rotations apply in order",
                    "parameters": [_IF_MATCH],
                    "responses": {
                        "200": {
                            "description": "Rotated",
                            "headers": _ETAG,
                            **_json(_ref("WebhookWithSecret")),
                        },
                        **_problems(401, 404, 409, 503),
                    },
                },
            },
            "/v1/event-types": {
                "get": {
                    "operationId": "listEventTypes",
                    "summary": "The event-type catalog: subsystem, topic, description, payload "
                    "schema (where declared) and whether the gateway validates payloads",
                    "responses": {
                        "200": {"description": "Every type", **_json(_ref("EventTypeList"))},
                        **_problems(401),
                    },
                }
            },
            "/v1/deliveries": {
                "get": {
                    "operationId": "listDeliveries",
                    "summary": "Deliveries, most recently updated first, a page at a time",
                    "parameters": [
                        _TENANT_QUERY,
                        {"name": "event_id", "in": "query", "schema": {"type": "string"}},
                        {"name": "webhook_id", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "string", "enum": [str(s) for s in DeliveryStatus]},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "description": "Page size",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": MAX_LIST_LIMIT,
                                "default": 100,
                            },
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "description": "next_cursor of the previous page (opaque)",
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": {"description": "Deliveries", **_json(_ref("DeliveryList"))},
                        **_problems(400, 401, 403, 422),
                    },
                }
            },
            "/v1/deliveries/{id}/retry": {
                "parameters": [_ID],
                "post": {
                    "operationId": "retryDelivery",
                    "summary": "Send a dead-lettered delivery back to the delivery queue",
                    "responses": {
                        "202": {"description": "Re-enqueued", **_json(_ref("Requeued"))},
                        **_problems(401, 404, 409, 503),
                    },
                },
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "security": [],
                    "responses": {
                        "200": {"description": "Serving", **_json({"type": "object"})},
                        "503": {
                            "description": "Starting, or a view is failing (named in views)",
                            **_json({"type": "object"}),
                        },
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "security": [],
                    "responses": {
                        "200": {"description": "This document", **_json({"type": "object"})}
                    },
                }
            },
        },
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
