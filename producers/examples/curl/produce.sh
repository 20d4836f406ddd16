#!/usr/bin/env bash
# Publish Ctrl Plane events and manage a webhook through the HTTP gateway with curl.
#
#   CPEVENTS_GATEWAY_URL=http://127.0.0.1:8080 CPEVENTS_TOKEN=<tenant token> \
#     bash producers/examples/curl/produce.sh ten_42
#
# The token is a tenant token from CPEVENTS_TENANT_TOKENS (it may only write its own tenant)
# or CPEVENTS_ADMIN_TOKEN. Errors come back as application/problem+json naming the field.
set -euo pipefail

GATEWAY="${CPEVENTS_GATEWAY_URL:-http://127.0.0.1:8080}"
TOKEN="${CPEVENTS_TOKEN:?set CPEVENTS_TOKEN to a tenant or admin token}"
TENANT="${1:-ten_demo}"
auth=(-H "Authorization: Bearer ${TOKEN}" -H "Content-Type: application/json")

echo "== one event (id and timestamp are assigned by the gateway when left out)"
curl -sS --fail-with-body "${auth[@]}" -X POST "${GATEWAY}/v1/events" --data @- <<JSON
{"type": "instance.created", "tenant_id": "${TENANT}", "actor_id": "usr_curl",
 "payload": {"replicas": 3, "region": "eu-west-1"}}
JSON
echo

echo "== a batch, in Ctrl Plane's own JSON form (202 only after Kafka acknowledged)"
curl -sS --fail-with-body "${auth[@]}" -X POST "${GATEWAY}/v1/events" --data @- <<JSON
[{"type": "deploy.started", "tenant_id": "${TENANT}", "payload": {"sha": "abc123"}},
 {"type": "deploy.succeeded", "tenant_id": "${TENANT}", "timestamp": "2024-05-01T12:00:00.5Z"}]
JSON
echo

echo "== a webhook for deploy events (the secret is shown only in this answer)"
curl -sS --fail-with-body "${auth[@]}" -X POST "${GATEWAY}/v1/webhooks" --data @- <<JSON
{"tenant_id": "${TENANT}", "url": "https://example.com/hooks/ctrlplane", "events": ["deploy.*"]}
JSON
echo

echo "== bad input is refused with a problem naming the field"
curl -sS "${auth[@]}" -X POST "${GATEWAY}/v1/events" \
  --data "{\"type\": \"instance.exploded\", \"tenant_id\": \"${TENANT}\"}"
echo
