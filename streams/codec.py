"""A Faust codec for our events: Confluent wire format through the schema registry.

Registered as ``cpevents-avro`` (:func:`register_codec`), so that
``app.topic(*topics, value_serializer="cpevents-avro")`` yields :class:`~schemas.event.Event`
objects, whatever version of the Event schema wrote them (the schema id in each record picks
the writer schema, resolved to ours by :class:`~schemas.serde.AvroCodec`).

Decoding never raises for a bad record: it returns :class:`Undecodable`. Faust decodes a record
once per subscribing channel and, when one channel's codec raises, acks the record for the
channels not yet served and throws the error into *their* streams: on the event topics that
would crash the router's agent, which subscribes to the same partitions. The stream of a
processor turns :class:`Undecodable` into a dead letter instead (``streams.processor_api``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faust.serializers import codecs

from schemas.event import Event
from schemas.serde import DecodeError, Serde
from schemas.topics import Topics

CODEC_NAME = "cpevents-avro"


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A record that did not decode to an Event, and why.

    ``retry`` is True when the record itself may be fine but the schema registry could not be
    asked (an outage): it is decoded again later rather than dead-lettered.
    """

    data: bytes | None
    reason: str
    retry: bool = False


def decode_event(serde: Serde, data: bytes | None) -> Event | Undecodable:
    """The Event in ``data`` (Confluent wire format), or why there is none."""
    try:
        # The schema id in the record decides; the topic argument is not used for decoding.
        return serde.events.decode(data, "")
    except DecodeError as exc:
        return Undecodable(data, exc.reason)
    except Exception as exc:  # the registry client's own errors: not the record's fault
        return Undecodable(data, f"schema registry unavailable: {exc}", retry=True)


class EventCodec(codecs.Codec):
    """Events as Confluent-framed Avro (see the module doc).

    Encoding registers the Event schema under the value subject of the event's catalog topic
    (``<prefix>events.<subsystem>-value``): a codec does not know the destination topic, and the
    schema id written into the record is the same under every subject.
    """

    def __init__(self, serde: Serde, topics: Topics, **kwargs: Any) -> None:
        super().__init__(serde=serde, topics=topics, **kwargs)
        self.serde = serde
        self.topics = topics
        # The last value decoded, by identity: Faust decodes a record once per subscribing
        # channel whose types differ from the first one's (the router's raw channel), so every
        # processor's topic asks for the same bytes object in a row. Events are immutable.
        self._last: tuple[bytes | None, Event | Undecodable] = (None, Undecodable(None, ""))

    def _loads(self, s: bytes) -> Event | Undecodable:
        last_bytes, last_value = self._last
        if s is last_bytes:
            return last_value
        value = decode_event(self.serde, s)
        if not (isinstance(value, Undecodable) and value.retry):
            self._last = (s, value)
        return value

    def _dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, Event):
            raise TypeError(f"value: {CODEC_NAME} encodes Event objects, got {type(obj).__name__}")
        return self.serde.events.encode(obj, self.topics.for_event_type(obj.type))


def register_codec(serde: Serde, topics: Topics) -> EventCodec:
    """Register an :class:`EventCodec` on ``serde`` as ``cpevents-avro``; returns it.

    Faust's codec registry is process-wide: the last registration wins, so a process that
    builds several apps (tests) should pass the returned codec itself as ``value_serializer``.
    """
    codec = EventCodec(serde, topics)
    codecs.register(CODEC_NAME, codec)
    return codec
