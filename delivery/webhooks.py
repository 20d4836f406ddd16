"""The webhook configs the worker needs: a live view of the compacted webhooks topic."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from confluent_kafka import Consumer, Message, TopicPartition

from delivery.keyring import Keyring
from plumbing.kafka.clients import consumer_config
from plumbing.kafka.view import CompactedTopicView
from plumbing.settings import Settings
from schemas.secrets import SecretBox
from schemas.serde import Serde
from schemas.webhook import Webhook

log = logging.getLogger(__name__)

# A missing or inactive webhook triggers a catch-up with the topic, at most this often.
_SYNC_INTERVAL = 1.0


class WebhookDirectory:
    """Webhooks by id, with their signing secrets decrypted on demand.

    A task can arrive before this process has read the webhook it names (the router saw it
    first), so a miss waits until the view has read everything written so far before it
    concludes the webhook is gone.
    """

    def __init__(self, settings: Settings, serde: Serde) -> None:
        if settings.secret_key is None:
            raise ValueError("secret_key: CPEVENTS_SECRET_KEY is required to sign deliveries")
        self._topic = settings.topics.webhooks
        self._serde = serde
        self._settings = settings
        self._view = self._new_view()
        self._watermarks = Consumer(consumer_config(settings, f"watermarks-{uuid.uuid4().hex}"))
        self._keyring = Keyring(SecretBox(settings.secret_key.get_secret_value()))
        # This worker's own writes (a disable), in force until the view has read them or newer.
        self._local: dict[str, Webhook] = {}
        self._last_sync = 0.0
        self._sync_lock = asyncio.Lock()

    def _decode(self, message: Message) -> tuple[str, Webhook | None]:
        key = (message.key() or b"").decode()
        value = message.value()
        if value is None:
            return key, None
        return key, self._serde.webhooks.decode(value, self._topic)

    def _on_error(self, message: Message, error: Exception) -> None:
        log.warning(
            "skipping undecodable webhook record at %s[%s]@%s: %s",
            message.topic(),
            message.partition(),
            message.offset(),
            error,
        )

    def start(self, timeout: float = 30.0) -> None:
        """Read the topic up to its current end."""
        self._view.start()
        self._view.wait_until_caught_up(timeout)

    def _new_view(self) -> CompactedTopicView[Webhook]:
        return CompactedTopicView(
            self._settings, self._topic, self._decode, on_error=self._on_error
        )

    def stop(self) -> None:
        self._view.stop()
        self._watermarks.close()

    def apply_local(self, webhook: Webhook) -> None:
        """Use ``webhook`` (which this worker is writing to the topic) until the view has it."""
        self._local[webhook.id] = webhook

    def get(self, webhook_id: str) -> Webhook | None:
        seen = self._view.get(webhook_id)
        local = self._local.get(webhook_id)
        if local is None:
            return seen
        if seen is not None and seen.updated_at >= local.updated_at:
            del self._local[webhook_id]  # the topic has caught up (or moved on): trust it again
            return seen
        return local

    async def lookup(self, webhook_id: str) -> Webhook | None:
        """The webhook, after catching up with the topic if it looks missing or inactive."""
        webhook = self.get(webhook_id)
        if webhook is not None and webhook.active:
            return webhook
        async with self._sync_lock:
            if time.monotonic() - self._last_sync >= _SYNC_INTERVAL:
                await asyncio.get_running_loop().run_in_executor(None, self._catch_up)
                self._last_sync = time.monotonic()
        return self.get(webhook_id)

    def _catch_up(self, timeout: float = 10.0) -> None:
        metadata = self._watermarks.list_topics(self._topic, timeout=timeout)
        for partition in metadata.topics[self._topic].partitions:
            _, high = self._watermarks.get_watermark_offsets(
                TopicPartition(self._topic, partition), timeout=timeout, cached=False
            )
            if high > 0:
                self._view.wait_for(partition, high - 1, timeout)

    def secrets(self, webhook: Webhook, now: float | None = None) -> tuple[str, ...]:
        """The plaintext of the webhook's secrets active at ``now`` (epoch seconds, default the
        current time); ValueError if one cannot be read."""
        return self._keyring.active(webhook, time.time() if now is None else now)
