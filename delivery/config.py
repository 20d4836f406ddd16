"""The delivery knobs, read once from ``Settings`` into one frozen object the parts share."""

from __future__ import annotations

from dataclasses import dataclass

from plumbing.settings import Settings


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """What the delivery worker, its lanes, its planner and its HTTP sender are tuned by.

    Durations are seconds. Built with :meth:`from_settings`; tests build one directly.
    """

    concurrency: int = 512  # requests in flight, all endpoints together
    per_endpoint_limit: int = 8  # requests in flight to one endpoint (scheme, host, port)
    queue_wait: float = 1.0  # longest wait in an endpoint's queue before its tasks are deferred
    connect_timeout: float = 5.0
    timeout: float = 15.0  # total time of one attempt
    max_response_bytes: int = 64 * 1024
    retry_after_cap: float = 3600.0
    allowed_networks: tuple[str, ...] = ()  # CIDRs exempt from the SSRF guard
    jitter: float = 0.1
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0
    breaker_trials: int = 3  # attempts a half-open breaker lets through
    breaker_max_cooldown: float = 300.0  # each failed trial doubles the cooldown up to this
    webhook_wait: float = 5.0  # longest wait for the webhook view to catch up on a miss
    disable_after: float = 5 * 24 * 3600.0  # 0: never disable a failing webhook
    session_timeout: float = 45.0
    retry_tiers: tuple[str, ...] = ("5s", "5m", "30m", "2h", "5h", "10h")
    rate_limit_hold: float = 2.0  # a rate-limited task waiting longer is parked, not held

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryConfig:
        """The ``delivery_*`` settings (and the retry tiers) of ``settings``."""
        return cls(
            concurrency=settings.delivery_concurrency,
            per_endpoint_limit=settings.delivery_per_endpoint_limit,
            queue_wait=settings.delivery_queue_wait,
            connect_timeout=settings.delivery_connect_timeout,
            timeout=settings.delivery_timeout,
            max_response_bytes=settings.delivery_max_response_bytes,
            retry_after_cap=settings.delivery_retry_after_cap,
            allowed_networks=tuple(settings.delivery_allowed_networks),
            jitter=settings.delivery_jitter,
            breaker_failures=settings.delivery_breaker_failures,
            breaker_cooldown=settings.delivery_breaker_cooldown,
            breaker_trials=settings.delivery_breaker_trials,
            breaker_max_cooldown=settings.delivery_breaker_max_cooldown,
            webhook_wait=settings.delivery_webhook_wait,
            disable_after=settings.delivery_disable_after,
            session_timeout=settings.delivery_session_timeout,
            retry_tiers=tuple(settings.retry_tiers),
            rate_limit_hold=settings.delivery_rate_limit_hold,
        )
