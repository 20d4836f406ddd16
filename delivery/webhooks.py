"""The webhook configs the worker needs: a live view of the compacted webhooks topic."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from delivery.keyring import Keyring
from plumbing.kafka.clients import consumer_config
from plumbing.kafka.view import CompactedTopicView
from plumbing.settings import Settings
from schemas.secrets import SecretBox
from schemas.serde import Serde
from schemas.webhook import Webhook

log = logging.getLogger(__name__)

# Secrets tried at start to tell whether CPEVENTS_SECRET_KEY opens the webhooks' secrets.
_KEY_CHECK_SAMPLE = 100


class SecretKeyError(ValueError):
    """CPEVENTS_SECRET_KEY opens none of the webhooks' secrets: every task would be
    dead-lettered unsigned."""


class WebhookDirectory:
    """Webhooks by id, with their signing secrets decrypted on demand.

    A task can arrive before this process has read the webhook it names (the router saw it
    first), so a miss waits until the view has read everything written so far before it
    concludes the webhook is gone (:meth:`lookup`).
    """

    def __init__(self, settings: Settings, serde: Serde) -> None:
        if settings.secret_key is None:
            raise ValueError("secret_key: CPEVENTS_SECRET_KEY is required to sign deliveries")
        self._topic = settings.topics.webhooks
        self._serde = serde
        self._settings = settings
        self._view = self._new_view()
        self._watermarks = Consumer(consumer_config(settings, f"watermarks-{uuid.uuid4().hex}"))
        self._box = SecretBox(settings.secret_key.get_secret_value())
        self._keyring = Keyring(self._box)
        # This worker's own writes (a disable), in force until the view has read them or newer.
        self._local: dict[str, Webhook] = {}
        # The last catch-up: when it began (time.monotonic) and whether it reached the end.
        self._synced: tuple[float, bool] = (-1.0, False)
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
        """The webhook as last read from the topic, or as this worker wrote it since."""
        seen = self._view.get(webhook_id)
        local = self._local.get(webhook_id)
        if local is None:
            return seen
        # Every write stores version + 1 of what it read: a version as high as ours in the
        # view is our write come back, or a write that raced it (the topic keeps the later).
        if seen is not None and seen.version >= local.version:
            del self._local[webhook_id]  # the topic has caught up (or moved on): trust it again
            return seen
        return local

    async def lookup(self, webhook_id: str, wait: float) -> Webhook | None:
        """The webhook; if it looks missing or inactive, as it is once the view has read the
        webhooks topic up to its end as of this call (a webhook created or re-activated a
        moment ago, which the router saw first). TimeoutError if the view could not get there
        within ``wait`` seconds: the webhook's fate is then unknown.

        Misses share catch-ups: one that began after a miss was seen answers for it.
        """
        webhook = self.get(webhook_id)
        if webhook is not None and webhook.active:
            return webhook
        asked = time.monotonic()
        async with self._sync_lock:
            began, reached = self._synced
            if began < asked:
                began = time.monotonic()
                loop = asyncio.get_running_loop()
                try:
                    await loop.run_in_executor(None, self._catch_up, wait)
                    reached = True
                except TimeoutError as exc:
                    # Once per catch-up, not per task: its tasks are deferred, not dropped.
                    log.warning(
                        "webhook view behind %s; deferring its misses: %s", self._topic, exc
                    )
                    reached = False
                self._synced = (began, reached)
        if not reached:
            raise TimeoutError(f"the webhook view did not catch up with {self._topic} in {wait}s")
        return self.get(webhook_id)

    def _catch_up(self, timeout: float) -> None:
        """Wait until the view has read every record of the topic written before this call."""
        deadline = time.monotonic() + timeout
        try:
            metadata = self._watermarks.list_topics(self._topic, timeout=timeout)
            ends = []
            for partition in metadata.topics[self._topic].partitions:
                _, high = self._watermarks.get_watermark_offsets(
                    TopicPartition(self._topic, partition),
                    timeout=max(deadline - time.monotonic(), 0.1),
                    cached=False,
                )
                ends.append((partition, high))
        except KafkaException as exc:
            raise TimeoutError(f"{self._topic}: {exc}") from exc
        for partition, high in ends:
            if high > 0:
                self._view.wait_for(partition, high - 1, max(deadline - time.monotonic(), 0.0))

    def check_secret_key(self, sample: int = _KEY_CHECK_SAMPLE) -> None:
        """Try the key on the secrets of up to ``sample`` of the webhooks read so far:
        SecretKeyError if there are some and none opens (a worker started with another
        ``CPEVENTS_SECRET_KEY`` than the gateway's would dead-letter every task)."""
        tried = opened = 0
        for webhook in self._view.snapshot().values():
            for secret in webhook.active_secrets()[:1]:  # one per webhook: a wider sample
                tried += 1
                try:
                    self._box.decrypt(secret.ciphertext)
                    opened += 1
                except ValueError:
                    pass
            if tried >= sample:
                break
        if tried and not opened:
            raise SecretKeyError(
                f"CPEVENTS_SECRET_KEY opens none of the {tried} webhook secrets tried (of "
                f"{self._topic}): it is not the key the gateway encrypts them with"
            )
        if opened < tried:
            log.warning(
                "CPEVENTS_SECRET_KEY opens %d of %d webhook secrets tried: the others' tasks "
                "will be dead-lettered (an old key dropped from the list too early?)",
                opened,
                tried,
            )
        elif tried:
            log.info("CPEVENTS_SECRET_KEY opens the webhook secrets (%d tried)", tried)

    def secrets(self, webhook: Webhook, now: float | None = None) -> tuple[str, ...]:
        """The plaintext of the webhook's secrets active at ``now`` (epoch seconds, default the
        current time); ValueError if one cannot be read."""
        return self._keyring.active(webhook, time.time() if now is None else now)

    def headers(self, webhook: Webhook) -> tuple[tuple[str, str], ...]:
        """The webhook's custom headers in plaintext (decrypted once per webhook version);
        ValueError if one cannot be read."""
        return self._keyring.headers(webhook)
