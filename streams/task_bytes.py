"""Delivery-task values built from an event record's bytes, without decoding and re-encoding it.

An Avro record's binary form is the concatenation of its fields' encodings, and a DeliveryTask is
``id, webhook_id, tenant_id, url, event, created_at``. So when an event record was written with
exactly our Event schema, its task is: the wire header of the DeliveryTask schema, the encoded
id, webhook id, tenant id and url, the event record's Avro body as it came (``value[5:]``), and
the encoded ``created_at``. That is what ``Serde.tasks.encode`` writes for the decoded event (a
unit test compares both) at a fraction of the cost: the router's hot path. The encodings are
schemas/wire.py's.
"""

from __future__ import annotations

from schemas.wire import HEADER_SIZE, header
from schemas.wire import encode_long as avro_long
from schemas.wire import encode_string as avro_string

# avro_long (`value` as an Avro long) and avro_string (`text` as an Avro string) are the wire
# module's encoders under the names the router and the tests import from here.
__all__ = ["TaskBytes", "avro_long", "avro_string"]


class TaskBytes:
    """Builds DeliveryTask values for one deliveries topic from scanned event records."""

    def __init__(self, task_schema_id: int) -> None:
        self._header = header(task_schema_id)
        # webhook id -> (url, encoded webhook_id, encoded url); a config update can change the url
        self._webhooks: dict[str, tuple[str, bytes, bytes]] = {}

    def build(
        self,
        delivery_id: str,
        webhook_id: str,
        url: str,
        tenant_id: str,
        value: bytes,
        created_at_avro: bytes,
    ) -> bytes:
        """The task of event record ``value`` (written with our exact Event schema) for a webhook.

        ``created_at_avro`` is ``avro_long(created_at in µs)``, computed once per batch.
        """
        cached = self._webhooks.get(webhook_id)
        if cached is None or cached[0] != url:
            cached = (url, avro_string(webhook_id), avro_string(url))
            self._webhooks[webhook_id] = cached
        return b"".join(
            (
                self._header,
                avro_string(delivery_id),
                cached[1],
                avro_string(tenant_id),
                cached[2],
                memoryview(value)[HEADER_SIZE:],
                created_at_avro,
            )
        )
