"""What the soak sets up and when it breaks things. Pure, no I/O.

- 20 tenants, 60 stable webhooks (3 per tenant, one endpoint each): a third subscribe to
  ``instance.*``/``deploy.*``, a third to ``health.*``/``domain.*``/``cert.*``, a third to all
  of these with the payload filter ``replicas >= 2``;
- endpoint roles, in every block of 30: 20 healthy, 4 flaky (30 % 503), 2 that hang for a while,
  1 that answers 410 Gone from early on, 3 that go down for an outage;
- spare healthy endpoints for webhooks created during the run (created, re-filtered, deleted);
- faults at fixed fractions of the load period (see :func:`fault_schedule`).

Soak settings (applied by bench/soak.py): the retry ladder is ``1s, 5s, 15s, 30s`` instead of
the default's hours, so that a flaky endpoint's retries end within the run (a task is tried 5
times over ≈ 56 s at most, jitter included); the attempt timeout is 3 s (the hanging endpoints
take 6 s); breaker cooldown 2 s doubling to 15 s; session timeouts 10 s so a SIGKILLed worker's
partitions move on quickly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.event_types import EventType, subsystem_of

TENANTS = 20
STABLE_WEBHOOKS = 60
SPARE_ENDPOINTS = 40
RETRY_TIERS = ("1s", "5s", "15s", "30s")
HANG_SECONDS = 6.0
FLAKY_P = 0.3
SOAK_ENV = {
    "CPEVENTS_DELIVERY_TIMEOUT": "3",
    "CPEVENTS_DELIVERY_CONNECT_TIMEOUT": "2",
    "CPEVENTS_DELIVERY_BREAKER_COOLDOWN": "2",
    "CPEVENTS_DELIVERY_BREAKER_MAX_COOLDOWN": "15",
    "CPEVENTS_DELIVERY_SESSION_TIMEOUT": "10",
    "CPEVENTS_STREAMS_SESSION_TIMEOUT": "10",
}
# Time a delivery may take at worst without being late: the ladder (jittered), the longest
# breaker cooldown and a hang, with a margin for rebalances after a kill.
SETTLE_SECONDS = 1.1 * (1 + 5 + 15 + 30) + 15 + HANG_SECONDS + 60

_ROLE_BLOCK = ["healthy"] * 20 + ["flaky"] * 4 + ["hang"] * 2 + ["gone"] + ["outage"] * 3
_SUBSCRIPTIONS: list[tuple[list[str], dict[str, Any] | None]] = [
    (["instance.*", "deploy.*"], None),
    (["health.*", "domain.*", "cert.*"], None),
    (
        ["instance.*", "deploy.*", "health.*", "domain.*", "cert.*"],
        {"payload": {"replicas": {"$gte": 2}}},
    ),
]
# Types the soak publishes: every type but the admin ones (the gateway refuses webhook.disabled,
# and the delivery worker writes it itself when it disables a webhook).
PUBLISHED_TYPES = [t for t in EventType if subsystem_of(t) != "admin"]


@dataclass(frozen=True)
class WebhookSpec:
    """A stable webhook: its tenant, endpoint slot, role, subscription and filter."""

    slot: int
    tenant: str
    role: str
    events: list[str]
    filter: dict[str, Any] | None

    def body(self, url: str) -> dict[str, Any]:
        """The ``POST /v1/webhooks`` body."""
        body: dict[str, Any] = {"tenant_id": self.tenant, "url": url, "events": self.events}
        if self.filter is not None:
            body["filter"] = self.filter
        return body


def tenant(index: int) -> str:
    return f"ten_soak{index:02d}"


def stable_webhooks() -> list[WebhookSpec]:
    specs = []
    for slot in range(STABLE_WEBHOOKS):
        events, payload_filter = _SUBSCRIPTIONS[slot * len(_SUBSCRIPTIONS) // STABLE_WEBHOOKS]
        specs.append(
            WebhookSpec(slot, tenant(slot % TENANTS), _ROLE_BLOCK[slot % len(_ROLE_BLOCK)],
                        events, payload_filter)
        )  # fmt: skip
    return specs


def payload(seq: int, draw: float) -> dict[str, Any]:
    """An event payload; ``draw`` in [0, 1) picks replicas 1-4 (a quarter fail the filter)."""
    return {"seq": seq, "replicas": 1 + int(draw * 4), "region": "eu" if seq % 2 else "us"}


@dataclass(frozen=True)
class Fault:
    """One scheduled change: ``action`` at ``at`` seconds into the load period."""

    at: float
    action: str
    detail: str = ""


def fault_schedule(load_seconds: float, cluster: bool) -> list[Fault]:
    """Faults by time. Outage and hang windows end before the load does, so what they held up
    is delivered within the run; a broker kill only with ``cluster``."""
    plan = [
        Fault(0.00, "behave", "flaky"),
        Fault(0.10, "behave", "gone"),
        Fault(0.15, "behave", "outage-start"),
        Fault(0.25, "kill", "streams"),
        Fault(0.35, "behave", "outage-end"),
        Fault(0.45, "kill", "delivery"),
        Fault(0.55, "behave", "hang-start"),
        Fault(0.70, "behave", "hang-end"),
    ]
    if cluster:
        plan.append(Fault(0.60, "broker-kill"))
    return sorted(
        (Fault(f.at * load_seconds, f.action, f.detail) for f in plan), key=lambda f: f.at
    )


def behaviours(change: str, ports_by_role: Mapping[str, list[int]]) -> dict[str, dict[str, Any]]:
    """The receiver control document for a ``behave`` fault."""
    mode_of = {
        "flaky": ("flaky", {"p": FLAKY_P}),
        "gone": ("gone", {}),
        "outage-start": ("down", {}),
        "outage-end": ("ok", {}),
        "hang-start": ("hang", {"hang": HANG_SECONDS}),
        "hang-end": ("ok", {}),
    }
    role = change.removesuffix("-start").removesuffix("-end")
    mode, extra = mode_of[change]
    return {str(port): {"mode": mode, **extra} for port in ports_by_role.get(role, [])}
