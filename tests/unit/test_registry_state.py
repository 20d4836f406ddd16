"""Registry bookkeeping without Kafka: ids, versions, deletes, levels, compatibility (409)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from registry.canonical import parse_schema
from registry.compatibility import Level
from registry.errors import RegistryError
from registry.mode import Mode
from registry.records import IdWatermarkRecord, Write
from registry.state import LATEST, RegistryState, WritePlan


def record_schema(*fields: tuple[str, object, object]) -> str:
    """A record ``R`` with ``(name, type, default)`` fields (default ... means none)."""
    rendered = []
    for name, kind, default in fields:
        field: dict[str, object] = {"name": name, "type": kind}
        if default is not ...:
            field["default"] = default
        rendered.append(field)
    return json.dumps({"type": "record", "name": "R", "fields": rendered})


V1 = record_schema(("a", "string", ...))
V2_OPTIONAL = record_schema(("a", "string", ...), ("b", ["null", "int"], None))
V2_REQUIRED = record_schema(("a", "string", ...), ("b", "int", ...))


class Applied:
    """A state fed with what its own plans write, as the Kafka topic would feed it back."""

    def __init__(self) -> None:
        self.state = RegistryState()
        self.table: dict[str, object] = {}

    def run(self, plan: WritePlan) -> object:
        for write in plan.writes:
            self._apply(write)
        return plan.response

    def _apply(self, write: Write) -> None:
        old = self.table.pop(write.key, None)
        if write.record is not None:
            self.table[write.key] = write.record
        self.state.apply(old, write.record)  # type: ignore[arg-type]

    def register(self, subject: str, text: str) -> int:
        response = self.run(self.state.plan_register(subject, parse_schema(text)))
        assert isinstance(response, dict)
        return int(response["id"])


def test_ids_are_max_plus_one_and_versions_count_per_subject() -> None:
    registry = Applied()
    assert registry.register("a-value", V1) == 1
    assert registry.register("a-value", V2_OPTIONAL) == 2
    assert registry.register("b-value", record_schema(("x", "long", ...))) == 3
    assert [r.version for r in registry.state.versions("a-value")] == [1, 2]
    assert registry.state.version("a-value", LATEST).schema_id == 2
    assert registry.state.subjects() == ["a-value", "b-value"]


def test_identical_schema_reuses_its_id_across_subjects_and_formatting() -> None:
    registry = Applied()
    first = registry.register("a-value", V1)
    reformatted = json.dumps(json.loads(V1), indent=4, sort_keys=True)
    assert registry.register("b-value", reformatted) == first
    # Registering it again under the same subject is not a new version.
    plan = registry.state.plan_register("a-value", parse_schema(reformatted))
    assert plan.writes == [] and plan.response == {"id": first}
    assert [(r.subject, r.version) for r in registry.state.versions_of_id(first, False)] == [
        ("a-value", 1),
        ("b-value", 1),
    ]


def test_incompatible_change_is_refused_with_409_and_nothing_is_written() -> None:
    registry = Applied()
    registry.register("s", V1)
    with pytest.raises(RegistryError) as refused:
        registry.state.plan_register("s", parse_schema(V2_REQUIRED))
    assert (refused.value.status, refused.value.code) == (409, 409)
    assert "b" in refused.value.message
    assert [r.version for r in registry.state.versions("s")] == [1]


def test_subject_level_overrides_the_global_one() -> None:
    registry = Applied()
    registry.register("s", V1)
    registry.run(registry.state.plan_set_level("s", Level.NONE))
    assert registry.state.level("s") is Level.NONE
    assert registry.state.level(None) is Level.BACKWARD
    assert registry.register("s", V2_REQUIRED) == 2
    assert registry.run(registry.state.plan_delete_level("s")) == {"compatibilityLevel": "NONE"}
    assert registry.state.subject_level("s") is None


def test_transitive_levels_check_every_version() -> None:
    registry = Applied()
    registry.run(registry.state.plan_set_level(None, Level.NONE))
    registry.register("s", V1)
    registry.register("s", record_schema(("c", "int", 0)))  # drops a, adds c with a default
    third = parse_schema(record_schema(("c", "int", 0), ("a", "string", ...)))
    registry.run(registry.state.plan_set_level("s", Level.BACKWARD))
    assert registry.state.compatibility("s", third, None) != []  # a has no default: v2 data
    registry.run(registry.state.plan_set_level("s", Level.FORWARD))
    assert registry.state.compatibility("s", third, None) == []  # v2 reads third's data
    registry.run(registry.state.plan_set_level("s", Level.FORWARD_TRANSITIVE))
    assert registry.state.compatibility("s", third, None) == []  # v1 reads a, ignores c


def test_compatibility_against_one_version() -> None:
    registry = Applied()
    registry.register("s", V1)
    assert registry.state.compatibility("s", parse_schema(V2_OPTIONAL), LATEST) == []
    assert registry.state.compatibility("s", parse_schema(V2_REQUIRED), 1) != []
    with pytest.raises(RegistryError) as missing:
        registry.state.compatibility("s", parse_schema(V1), 7)
    assert missing.value.code == 40402


def test_soft_then_permanent_delete_of_a_subject() -> None:
    registry = Applied()
    registry.register("s", V1)
    registry.register("s", V2_OPTIONAL)
    with pytest.raises(RegistryError) as not_soft:
        registry.state.plan_delete_subject("s", permanent=True)
    assert not_soft.value.code == 40405
    assert registry.run(registry.state.plan_delete_subject("s", permanent=False)) == [1, 2]
    assert registry.state.subjects() == []
    assert registry.state.subjects(deleted=True) == ["s"]
    with pytest.raises(RegistryError) as gone:
        registry.state.versions("s")
    assert gone.value.code == 40401
    with pytest.raises(RegistryError) as again:
        registry.state.plan_delete_subject("s", permanent=False)
    assert again.value.code == 40404
    assert registry.run(registry.state.plan_delete_subject("s", permanent=True)) == [1, 2]
    assert registry.state.subjects(deleted=True) == []
    # The ids are gone with their last version (as after compaction and a restart), and never
    # given again: new schemas, and the same schemas registered again, get fresh ids.
    for schema_id in (1, 2):
        with pytest.raises(RegistryError) as forgotten:
            registry.state.schema_by_id(schema_id)
        assert forgotten.value.code == 40403
    assert registry.register("t", record_schema(("z", "int", ...))) == 3
    assert registry.register("s", V1) == 4


def test_delete_one_version_soft_then_permanent() -> None:
    registry = Applied()
    registry.register("s", V1)
    registry.register("s", V2_OPTIONAL)
    assert registry.run(registry.state.plan_delete_version("s", LATEST, permanent=False)) == 2
    assert registry.state.version("s", LATEST).version == 1
    assert registry.state.version("s", 2, deleted=True).deleted
    # A soft-deleted version keeps its number: registering the schema again is version 3.
    assert registry.register("s", V2_OPTIONAL) == 2
    assert registry.state.version("s", LATEST).version == 3
    registry.run(registry.state.plan_delete_version("s", 3, permanent=False))
    with pytest.raises(RegistryError) as soft:
        registry.state.plan_delete_version("s", 2, permanent=False)
    assert soft.value.code == 40406
    with pytest.raises(RegistryError) as not_soft:
        registry.state.plan_delete_version("s", 1, permanent=True)
    assert not_soft.value.code == 40407
    assert registry.run(registry.state.plan_delete_version("s", 2, permanent=True)) == 2
    with pytest.raises(RegistryError) as missing:
        registry.state.version("s", 2, deleted=True)
    assert missing.value.code == 40402
    assert [r.version for r in registry.state.versions("s", deleted=True)] == [1, 3]


def test_lookup_finds_the_version_or_says_what_is_missing() -> None:
    registry = Applied()
    registry.register("s", V1)
    assert registry.state.lookup("s", parse_schema(V1)).version == 1
    with pytest.raises(RegistryError) as no_schema:
        registry.state.lookup("s", parse_schema(V2_OPTIONAL))
    assert no_schema.value.code == 40403
    with pytest.raises(RegistryError) as no_subject:
        registry.state.lookup("nope", parse_schema(V1))
    assert no_subject.value.code == 40401
    with pytest.raises(RegistryError) as no_id:
        registry.state.schema_by_id(99)
    assert no_id.value.code == 40403


def test_config_of_a_subject_without_one() -> None:
    state = RegistryState()
    with pytest.raises(RegistryError) as missing:
        state.plan_delete_level("s")
    assert missing.value.code == 40408


def test_ids_survive_compaction_through_the_watermark() -> None:
    """A restart after compaction sees only the live records and the watermark: ids continue
    from the highest ever given, not from the highest still live."""
    registry = Applied()
    registry.register("keep", V1)
    registry.register("gone", record_schema(("x", "long", ...)))
    registry.run(registry.state.plan_delete_subject("gone", permanent=False))
    registry.run(registry.state.plan_delete_subject("gone", permanent=True))
    assert registry.state.max_id() == 2

    compacted = Applied()
    for key, record in registry.table.items():
        compacted.table[key] = record
        compacted.state.apply(None, record)  # type: ignore[arg-type]
    assert compacted.state.max_id() == 2
    assert compacted.register("new", record_schema(("y", "long", ...))) == 3
    assert compacted.register("gone", record_schema(("x", "long", ...))) == 4
    # Without the watermark (what the registry did before), id 2 would have been given again.
    without = RegistryState()
    for record in registry.table.values():
        if not isinstance(record, IdWatermarkRecord):
            without.apply(None, record)  # type: ignore[arg-type]
    assert without.max_id() == 1


def test_a_shared_schema_keeps_its_id_while_another_subject_uses_it() -> None:
    registry = Applied()
    assert registry.register("a", V1) == 1
    assert registry.register("b", V1) == 1
    registry.run(registry.state.plan_delete_subject("a", permanent=False))
    registry.run(registry.state.plan_delete_subject("a", permanent=True))
    assert registry.state.schema_by_id(1)
    assert registry.register("a", V1) == 1


def test_read_only_modes_refuse_writes_with_42205() -> None:
    registry = Applied()
    registry.register("s", V1)
    registry.run(registry.state.plan_set_mode("s", Mode.READONLY))
    assert registry.state.mode("s") is Mode.READONLY
    assert registry.state.mode("other") is Mode.READWRITE
    refused: list[Callable[[], WritePlan]] = [
        lambda: registry.state.plan_register("s", parse_schema(V2_OPTIONAL)),
        lambda: registry.state.plan_delete_subject("s", permanent=False),
        lambda: registry.state.plan_delete_version("s", 1, permanent=False),
        lambda: registry.state.plan_set_level("s", Level.NONE),
        lambda: registry.state.plan_delete_level("s"),
    ]
    for attempt in refused:
        with pytest.raises(RegistryError) as error:
            attempt()
        assert (error.value.status, error.value.code) == (422, 42205)
        assert "s is in read-only mode" in error.value.message
    # Registering a schema the subject already has writes nothing: still answered.
    assert registry.register("s", V1) == 1
    registry.register("other", V2_REQUIRED)

    # A global READONLY applies to subjects without a mode of their own; a subject's
    # READWRITE wins over it, but not over the global READONLY_OVERRIDE.
    registry.run(registry.state.plan_set_mode("s", Mode.READWRITE))
    registry.run(registry.state.plan_set_mode(None, Mode.READONLY))
    assert registry.state.mode("other") is Mode.READONLY
    assert registry.state.mode("s") is Mode.READWRITE
    with pytest.raises(RegistryError):
        registry.state.plan_set_level(None, Level.FULL)
    registry.run(registry.state.plan_set_mode(None, Mode.READONLY_OVERRIDE))
    assert registry.state.mode("s") is Mode.READONLY_OVERRIDE
    registry.run(registry.state.plan_set_mode(None, Mode.READWRITE))
    assert registry.run(registry.state.plan_delete_mode("s")) == {"mode": "READWRITE"}
    with pytest.raises(RegistryError) as none_left:
        registry.state.plan_delete_mode("s")
    assert none_left.value.code == 40409
    assert registry.register("s", V2_OPTIONAL) == 3


def test_unknown_modes_are_42204() -> None:
    assert Mode.parse("readonly") is Mode.READONLY
    for bad in ("IMPORT", "sideways", None, 3):
        with pytest.raises(RegistryError) as error:
            Mode.parse(bad)
        assert error.value.code == 42204
