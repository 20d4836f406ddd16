"""Property-based requests generated from the gateway's own OpenAPI document: no request may
make it answer 5xx, and every answer must match the document."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from producers.gateway.openapi import document
from tests.fixtures_gateway import ADMIN_TOKEN, RunningGateway
from tests.fixtures_gateway import module_gateway as module_gateway  # fixture

schema = schemathesis.openapi.from_dict(document())

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_request_yields_a_server_error(
    case: schemathesis.Case, module_gateway: RunningGateway
) -> None:
    for token in (ADMIN_TOKEN, "tok-tenant-a"):
        case.call_and_validate(
            base_url=module_gateway.url,
            headers=RunningGateway.auth(token),
            checks=CHECKS,
            timeout=30,
        )
