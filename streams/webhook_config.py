"""The webhook-config table of a router worker: every partition of the compacted webhooks topic.

Why not a Faust ``GlobalTable``: its recovery and standby handling has known pitfalls under
several workers (faust-streaming issues #283, #176) and a custom changelog topic breaks the
assignor. A broadcast cache reading the topic without a consumer group gives every worker the
whole config set by construction; the compacted topic stays the source of truth.
"""

from __future__ import annotations

import logging

from confluent_kafka import Message

from plumbing.kafka.view import CompactedTopicView
from plumbing.settings import Settings
from schemas.serde import AvroCodec, DecodeError
from schemas.webhook import Webhook
from streams.matching import WebhookIndex

log = logging.getLogger(__name__)


class WebhookConfig:
    """A live :class:`WebhookIndex` of ``settings.topics.webhooks``.

    ``start()`` blocks until every config written before it is applied, so a (re)started worker
    never routes with a partial table; later changes reach the index as the reader thread sees
    them (typically within ~100 ms).
    """

    def __init__(self, settings: Settings, codec: AvroCodec[Webhook]) -> None:
        self._codec = codec
        self.topic = settings.topics.webhooks
        self.index = WebhookIndex()
        self.view: CompactedTopicView[Webhook] = CompactedTopicView(
            settings, self.topic, self._decode, on_error=self._on_error, poll_interval=0.05
        )
        self.view.add_listener(self._on_change)

    def start(self, timeout: float = 60.0) -> WebhookConfig:
        self.view.start()
        self.view.wait_until_caught_up(timeout)
        return self

    def stop(self) -> None:
        self.view.stop()

    def _decode(self, message: Message) -> tuple[str, Webhook | None]:
        raw_key = message.key()
        if not raw_key:
            raise DecodeError("webhook record without a key (the webhook id)")
        key = raw_key.decode("utf-8", errors="replace")
        value = message.value()
        if value is None:
            return key, None  # tombstone: the webhook was deleted
        webhook = self._codec.decode(value, self.topic)
        if webhook.id != key:
            raise DecodeError(f"key {key!r} differs from the webhook id {webhook.id!r}")
        return key, webhook

    def _on_change(self, key: str, _old: Webhook | None, new: Webhook | None) -> None:
        self.index.apply(key, new)

    def _on_error(self, message: Message, exc: Exception) -> None:
        # The webhooks topic is written by our own gateway; a bad record there is a bug to see
        # in the logs, not a reason to stop routing.
        log.error(
            "skipping undecodable webhook config at %s[%s]@%s: %s",
            message.topic(),
            message.partition(),
            message.offset(),
            exc,
        )
