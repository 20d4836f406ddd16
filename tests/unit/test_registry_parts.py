"""Registry building blocks without Kafka: canonical parsing, the seven levels, topic records,
request parameters, error bodies."""

from __future__ import annotations

import json

import pytest

from registry.canonical import parse_schema
from registry.compatibility import Level, check
from registry.errors import RegistryError, incompatible
from registry.params import page, parse_bool, parse_id, parse_version
from registry.records import (
    ConfigRecord,
    IdWatermarkRecord,
    ModeRecord,
    SchemaRecord,
    Write,
    WriterRecord,
    config_key,
    decode,
    mode_key,
)
from registry.state import LATEST
from schemas.avsc import schema_names, schema_str

OLD = parse_schema('{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}')
# Adds a field with a default: new readers fill it in, old readers skip it.
ADD_DEFAULT = parse_schema(
    '{"type":"record","name":"R","fields":[{"name":"a","type":"string"},'
    '{"name":"b","type":"int","default":0}]}'
)
# Adds a field without a default: new readers cannot read old data.
ADD_REQUIRED = parse_schema(
    '{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"int"}]}'
)
# Drops a field without a default: old readers cannot read new data.
DROP_REQUIRED = parse_schema('{"type":"record","name":"R","fields":[]}')


@pytest.mark.parametrize("name", schema_names())
def test_every_contract_schema_parses_and_keeps_its_properties(name: str) -> None:
    parsed = parse_schema(schema_str(name))
    assert json.loads(parsed.text)["name"] == name
    assert parse_schema(parsed.text).key == parsed.key
    if name == "Event":
        assert "io.debezium.data.Json" in parsed.text and "timestamp-micros" in parsed.text


def test_formatting_and_key_order_do_not_change_the_key() -> None:
    text = schema_str("Event")
    shuffled = json.dumps(json.loads(text), indent=2, sort_keys=True)
    assert parse_schema(shuffled).key == parse_schema(text).key
    assert parse_schema('"string"').key == parse_schema('{"type": "string"}').key
    assert parse_schema(text).key != OLD.key


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "",
        '{"type":"record","name":"R"}',
        '{"type":"record","name":"R","fields":[{"name":"a","type":"nope"}]}',
        '{"type":"enum","name":"E","symbols":[1]}',
        "42",
        '{"type":"record","name":"1R","fields":[]}',
    ],
)
def test_invalid_schemas_are_42201_with_a_reason(text: str) -> None:
    with pytest.raises(RegistryError) as refused:
        parse_schema(text)
    assert (refused.value.status, refused.value.code) == (422, 42201)
    assert refused.value.message.startswith("Invalid schema: ")


def test_non_avro_schema_types_are_refused() -> None:
    with pytest.raises(RegistryError) as refused:
        parse_schema('{"type":"object"}', "JSON")
    assert refused.value.code == 42201 and "JSON" in refused.value.message


@pytest.mark.parametrize(
    ("level", "new", "compatible"),
    [
        (Level.NONE, ADD_REQUIRED, True),
        (Level.BACKWARD, ADD_DEFAULT, True),
        (Level.BACKWARD, ADD_REQUIRED, False),
        (Level.BACKWARD, DROP_REQUIRED, True),
        (Level.FORWARD, ADD_REQUIRED, True),
        (Level.FORWARD, DROP_REQUIRED, False),
        (Level.FULL, ADD_DEFAULT, True),
        (Level.FULL, ADD_REQUIRED, False),
        (Level.FULL, DROP_REQUIRED, False),
        (Level.BACKWARD_TRANSITIVE, ADD_REQUIRED, False),
        (Level.FORWARD_TRANSITIVE, DROP_REQUIRED, False),
        (Level.FULL_TRANSITIVE, ADD_DEFAULT, True),
    ],
)
def test_levels_follow_the_avro_checker(level: Level, new: object, compatible: bool) -> None:
    assert (check(level, new, [OLD]) == []) is compatible  # type: ignore[arg-type]


def test_transitive_levels_look_past_the_latest_version() -> None:
    history = [ADD_REQUIRED, OLD]  # OLD is the latest; the first version requires "b"
    new = parse_schema(
        '{"type":"record","name":"R","fields":[{"name":"a","type":"string"},'
        '{"name":"c","type":"int"}]}'
    )
    assert check(Level.FORWARD, new, history) == []  # OLD reads a, skips c
    assert check(Level.FORWARD_TRANSITIVE, new, history) != []  # the first one needs b


def test_level_names_parse_in_any_case_and_others_are_42203() -> None:
    assert Level.parse("full_transitive") is Level.FULL_TRANSITIVE
    for bad in ("sideways", None, 3):
        with pytest.raises(RegistryError) as refused:
            Level.parse(bad)
        assert refused.value.code == 42203


def test_records_round_trip_through_their_bytes() -> None:
    for record in (
        SchemaRecord("s-value", 3, 7, OLD.text, deleted=True),
        ConfigRecord("s-value", "FULL"),
        ConfigRecord(None, "NONE"),
        WriterRecord("http://127.0.0.1:8081", "abc"),
        ModeRecord("s-value", "READONLY"),
        ModeRecord(None, "READWRITE"),
        IdWatermarkRecord(42),
    ):
        write = Write.put(record)
        assert decode(write.key.encode(), write.value_bytes()) == (record.key, record)
    tombstone = Write.tombstone(config_key("s"))
    assert decode(tombstone.key.encode(), tombstone.value_bytes()) == (config_key("s"), None)


def test_mode_records_read_as_confluent_and_karapace_write_them() -> None:
    key, record = decode(b'{"keytype":"MODE","subject":"s","magic":0}', b'{"mode":"READONLY"}')
    assert (key, record) == (mode_key("s"), ModeRecord("s", "READONLY"))
    key, record = decode(b'{"keytype":"MODE","subject":null,"magic":0}', b'{"mode":"IMPORT"}')
    assert (key, record) == (mode_key(None), ModeRecord(None, "IMPORT"))


def test_keys_are_canonical_whatever_the_writer_spacing() -> None:
    spaced = b'{ "subject": "s", "keytype": "CONFIG", "magic": 0 }'
    assert decode(spaced, b'{"compatibilityLevel":"FULL"}')[0] == config_key("s")


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (None, b"{}", "without a key"),
        (b"nope", b"{}", "key is not JSON"),
        (b'{"keytype":"SCHEMA","subject":"s","version":1}', b"[]", "JSON object expected"),
        (b'{"keytype":"SCHEMA","subject":"s","version":1}', b'{"subject":"s"}', "missing"),
        (
            b'{"keytype":"SCHEMA","subject":"s","version":1}',
            b'{"subject":"s","version":1,"id":true,"schema":"\\"int\\""}',
            "'id' must be int",
        ),
        (
            b'{"keytype":"SCHEMA","subject":"s","version":1}',
            b'{"subject":"s","version":1,"id":1,"schema":"{bad"}',
            "Invalid schema",
        ),
        (b'{"keytype":"CONTEXT"}', b"{}", "unknown keytype"),
        (b'{"keytype":"MODE","subject":null}', b'{"mode":1}', "'mode' must be str"),
        (b'{"keytype":"ID_WATERMARK"}', b'{"id":"7"}', "'id' must be int"),
    ],
)
def test_bad_records_are_value_errors_naming_the_problem(
    key: bytes | None, value: bytes, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        decode(key, value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("True", True), ("TRUE", True), ("false", False), ("False", False)],
)
def test_query_booleans_in_either_case(text: str, expected: bool) -> None:
    assert parse_bool(text) is expected


def test_query_boolean_defaults_and_java_semantics() -> None:
    assert parse_bool(None) is False and parse_bool(None, default=True) is True
    assert parse_bool("1") is False and parse_bool("yes") is False


def test_versions_and_ids_in_paths() -> None:
    assert parse_version("latest") == LATEST == parse_version("-1")
    assert parse_version("12") == 12
    for bad in ("0", "-2", "x", str(2**31)):
        with pytest.raises(RegistryError) as refused:
            parse_version(bad)
        assert refused.value.code == 42202
    assert parse_id("5") == 5
    for bad in ("0", "x"):
        with pytest.raises(RegistryError) as missing:
            parse_id(bad)
        assert missing.value.code == 40403


def test_pagination_and_error_bodies() -> None:
    assert page(["a", "b", "c"], 1, -1) == ["b", "c"]
    assert page(["a", "b", "c"], 0, 2) == ["a", "b"]
    body = incompatible("s", ["why"]).body()
    assert body["error_code"] == 409 and "why" in body["message"]
