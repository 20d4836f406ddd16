"""The registry's bookkeeping, rebuilt from the records of its topic: subjects and their
versions, schema ids, compatibility levels, modes and the current writer. Reads answer requests;
``plan_*`` methods decide what a write request must produce (ids above the highest ever given,
an identical schema reusing its id, versions per subject, 42205 in a read-only mode) without
doing any I/O.

Schema ids are never given twice: a permanently deleted schema's id is forgotten once no
version uses it any more, and the next id is planned from the highest id ever seen, which every
permanent delete also writes to the topic (``IdWatermarkRecord``) so that it survives the
compaction of the deleted versions and a restart."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from registry import errors
from registry.canonical import ParsedSchema, load_schema
from registry.compatibility import DEFAULT_LEVEL, Level, check, pair_problems
from registry.mode import DEFAULT_MODE, Mode
from registry.records import (
    ConfigRecord,
    IdWatermarkRecord,
    ModeRecord,
    Record,
    SchemaRecord,
    Write,
    WriterRecord,
    config_key,
    mode_key,
    schema_key,
)

LATEST = -1


@dataclass(frozen=True)
class WritePlan:
    """Records to produce (in one transaction) and the answer once they are read back."""

    writes: list[Write]
    response: Any


@dataclass
class _Subject:
    versions: dict[int, SchemaRecord] = field(default_factory=dict)

    def live(self) -> list[SchemaRecord]:
        return [r for _, r in sorted(self.versions.items()) if not r.deleted]

    def visible(self, deleted: bool) -> list[SchemaRecord]:
        return [r for _, r in sorted(self.versions.items()) if deleted or not r.deleted]


class RegistryState:
    """In-memory state of one registry topic. Not thread-safe: callers hold a lock."""

    def __init__(self) -> None:
        self._subjects: dict[str, _Subject] = {}
        self._schemas: dict[int, str] = {}
        self._ids_by_key: dict[str, int] = {}
        self._key_of_id: dict[int, str] = {}
        # How many versions (soft-deleted ones included) use each id: at zero the id is gone.
        self._uses: dict[int, int] = {}
        self._parsed: dict[int, ParsedSchema] = {}
        self._max_id = 0
        self._levels: dict[str | None, Level] = {}
        self._modes: dict[str | None, Mode] = {}
        self.writer: WriterRecord | None = None

    # -- applying records (in topic order) ------------------------------------------------------

    def apply(self, old: Record | None, new: Record | None) -> None:
        """Apply one change of the topic's table: ``new`` replaces ``old``; ``new`` None is a
        tombstone of ``old``'s slot."""
        if isinstance(new, SchemaRecord):
            self._add_version(new)
        if isinstance(old, SchemaRecord):
            # After adding ``new``: a soft delete (same id) must not forget the schema.
            self._drop_use(old, removed=new is None)
        if new is None:
            if isinstance(old, ConfigRecord):
                self._levels.pop(old.subject, None)
            elif isinstance(old, ModeRecord):
                self._modes.pop(old.subject, None)
            elif isinstance(old, WriterRecord):
                self.writer = None
        elif isinstance(new, ConfigRecord):
            # A level this version does not know (a newer registry wrote it) is ignored.
            with contextlib.suppress(errors.RegistryError):
                self._levels[new.subject] = Level.parse(new.level)
        elif isinstance(new, ModeRecord):
            # Likewise a mode (IMPORT, written by another registry): the previous one stays.
            with contextlib.suppress(errors.RegistryError):
                self._modes[new.subject] = Mode.parse(new.mode)
        elif isinstance(new, IdWatermarkRecord):
            self._max_id = max(self._max_id, new.schema_id)
        elif isinstance(new, WriterRecord):
            self.writer = new

    def _add_version(self, record: SchemaRecord) -> None:
        self._subjects.setdefault(record.subject, _Subject()).versions[record.version] = record
        self._uses[record.schema_id] = self._uses.get(record.schema_id, 0) + 1
        if record.schema_id not in self._schemas:
            self._schemas[record.schema_id] = record.schema
            key = load_schema(record.schema).key
            self._key_of_id[record.schema_id] = key
            self._ids_by_key.setdefault(key, record.schema_id)
        self._max_id = max(self._max_id, record.schema_id)

    def _drop_use(self, record: SchemaRecord, removed: bool) -> None:
        if removed:
            subject = self._subjects.get(record.subject)
            if subject is not None:
                subject.versions.pop(record.version, None)
                if not subject.versions:
                    del self._subjects[record.subject]
        left = self._uses.get(record.schema_id, 0) - 1
        if left > 0:
            self._uses[record.schema_id] = left
            return
        # Permanently deleted everywhere: the id is gone (a reader gets 40403, the same schema
        # registered again gets a new id), as it will be after compaction and a restart.
        schema_id = record.schema_id
        self._uses.pop(schema_id, None)
        self._schemas.pop(schema_id, None)
        self._parsed.pop(schema_id, None)
        key = self._key_of_id.pop(schema_id, None)
        if key is not None and self._ids_by_key.get(key) == schema_id:
            del self._ids_by_key[key]
            # Another id with the same schema (written by another registry) takes its place.
            for other, other_key in self._key_of_id.items():
                if other_key == key:
                    self._ids_by_key[key] = other
                    break

    # -- reads ----------------------------------------------------------------------------------

    def schema_by_id(self, schema_id: int) -> str:
        text = self._schemas.get(schema_id)
        if text is None:
            raise errors.schema_not_found(f"Schema {schema_id} not found")
        return text

    def versions_of_id(self, schema_id: int, deleted: bool) -> list[SchemaRecord]:
        """Every (subject, version) registered with schema ``schema_id``."""
        self.schema_by_id(schema_id)
        return [
            record
            for name in sorted(self._subjects)
            for record in self._subjects[name].visible(deleted)
            if record.schema_id == schema_id
        ]

    def subjects(self, deleted: bool = False, deleted_only: bool = False) -> list[str]:
        names = []
        for name in sorted(self._subjects):
            has_live = bool(self._subjects[name].live())
            if deleted_only:
                if not has_live:
                    names.append(name)
            elif has_live or deleted:
                names.append(name)
        return names

    def versions(self, subject: str, deleted: bool = False) -> list[SchemaRecord]:
        """The subject's versions, oldest first; 40401 if it has none visible."""
        found = self._subjects.get(subject)
        records = found.visible(deleted) if found is not None else []
        if not records:
            raise errors.subject_not_found(subject)
        return records

    def version(self, subject: str, version: int, deleted: bool = False) -> SchemaRecord:
        """One version (``LATEST`` for the newest); 40401 / 40402 when missing."""
        records = self.versions(subject, deleted)
        if version == LATEST:
            return records[-1]
        for record in records:
            if record.version == version:
                return record
        raise errors.version_not_found(subject, version)

    def lookup(self, subject: str, schema: ParsedSchema, deleted: bool = False) -> SchemaRecord:
        """The subject's version holding ``schema``; 40401 / 40403 when there is none."""
        for record in reversed(self.versions(subject, deleted)):
            if self._ids_by_key.get(schema.key) == record.schema_id:
                return record
        raise errors.schema_not_found(f"Schema not found under subject '{subject}'")

    def level(self, subject: str | None) -> Level:
        """The level in force for ``subject`` (its own, else the global one)."""
        own = self._levels.get(subject)
        if own is not None:
            return own
        return self._levels.get(None, DEFAULT_LEVEL)

    def subject_level(self, subject: str) -> Level | None:
        return self._levels.get(subject)

    def mode(self, subject: str | None) -> Mode:
        """The mode in force for ``subject`` (None: the global one): a global
        ``READONLY_OVERRIDE`` wins over a subject's own mode, which wins over the global one."""
        global_mode = self._modes.get(None, DEFAULT_MODE)
        if subject is None or global_mode is Mode.READONLY_OVERRIDE:
            return global_mode
        return self._modes.get(subject, global_mode)

    def subject_mode(self, subject: str) -> Mode | None:
        return self._modes.get(subject)

    def max_id(self) -> int:
        """The highest schema id ever given (the next one is above it)."""
        return self._max_id

    def compatibility(self, subject: str, schema: ParsedSchema, version: int | None) -> list[str]:
        """Problems registering ``schema``: against one version (``LATEST`` included), or, with
        ``version`` None, against the versions the subject's level says."""
        level = self.level(subject)
        if version is None:
            found = self._subjects.get(subject)
            existing = [self._parse(r) for r in found.live()] if found is not None else []
            return check(level, schema, existing)
        if level is Level.NONE:
            return []
        return pair_problems(level, schema, self._parse(self.version(subject, version)))

    # -- write plans ----------------------------------------------------------------------------

    def plan_register(self, subject: str, schema: ParsedSchema) -> WritePlan:
        """Register ``schema`` under ``subject``: the existing version if it is already there,
        else a compatibility check and a new version (409 when the check fails)."""
        found = self._subjects.get(subject)
        live = found.live() if found is not None else []
        known_id = self._ids_by_key.get(schema.key)
        for record in live:
            if record.schema_id == known_id:
                # Not a write: serializers register on start-up, and must keep working while
                # an operator holds the registry read-only.
                return WritePlan([], {"id": record.schema_id})
        self._check_writable(subject)
        problems = check(self.level(subject), schema, [self._parse(r) for r in live])
        if problems:
            raise errors.incompatible(subject, problems)
        schema_id = known_id if known_id is not None else self._max_id + 1
        version = max(found.versions, default=0) + 1 if found is not None else 1
        text = self._schemas.get(schema_id, schema.text)
        record = SchemaRecord(subject, version, schema_id, text)
        return WritePlan([Write.put(record)], {"id": schema_id})

    def plan_delete_subject(self, subject: str, permanent: bool) -> WritePlan:
        """Soft delete (mark every version) or, after that, permanent delete (tombstones)."""
        self._check_writable(subject)
        found = self._subjects.get(subject)
        if found is None:
            raise errors.subject_not_found(subject)
        live = found.live()
        if permanent:
            if live:
                raise errors.subject_not_soft_deleted(subject)
            versions = sorted(found.versions)
            writes = [Write.tombstone(schema_key(subject, v)) for v in versions]
            writes.append(self._watermark())
        else:
            if not live:
                raise errors.subject_soft_deleted(subject)
            versions = [r.version for r in live]
            writes = [Write.put(_deleted(r)) for r in live]
        if subject in self._levels:
            writes.append(Write.tombstone(config_key(subject)))
        if subject in self._modes:
            writes.append(Write.tombstone(mode_key(subject)))
        return WritePlan(writes, versions)

    def plan_delete_version(self, subject: str, version: int, permanent: bool) -> WritePlan:
        self._check_writable(subject)
        found = self._subjects.get(subject)
        if found is None:
            raise errors.subject_not_found(subject)
        if version == LATEST:
            live = found.live()
            if not live:
                raise errors.subject_not_found(subject)
            version = live[-1].version
        record = found.versions.get(version)
        if record is None:
            raise errors.version_not_found(subject, version)
        if permanent:
            if not record.deleted:
                raise errors.version_not_soft_deleted(subject, version)
            return WritePlan([Write.tombstone(record.key), self._watermark()], version)
        if record.deleted:
            raise errors.version_soft_deleted(subject, version)
        return WritePlan([Write.put(_deleted(record))], version)

    def plan_set_level(self, subject: str | None, level: Level) -> WritePlan:
        self._check_writable(subject)
        return WritePlan(
            [Write.put(ConfigRecord(subject, level.value))], {"compatibility": level.value}
        )

    def plan_delete_level(self, subject: str | None) -> WritePlan:
        """Remove a subject's own level (back to the global one) or reset the global level."""
        self._check_writable(subject)
        own = self._levels.get(subject)
        if own is None:
            if subject is not None:
                raise errors.subject_config_not_found(subject)
            return WritePlan([], {"compatibilityLevel": DEFAULT_LEVEL.value})
        return WritePlan([Write.tombstone(config_key(subject))], {"compatibilityLevel": own.value})

    def plan_set_mode(self, subject: str | None, mode: Mode) -> WritePlan:
        """Set a subject's or the global mode; always allowed (else READONLY could not end)."""
        return WritePlan([Write.put(ModeRecord(subject, mode.value))], {"mode": mode.value})

    def plan_delete_mode(self, subject: str) -> WritePlan:
        """Remove a subject's own mode (back to the global one); 40409 if it has none."""
        own = self._modes.get(subject)
        if own is None:
            raise errors.subject_mode_not_found(subject)
        return WritePlan([Write.tombstone(mode_key(subject))], {"mode": own.value})

    def _check_writable(self, subject: str | None) -> None:
        if self.mode(subject).read_only:
            raise errors.operation_not_permitted(subject)

    def _watermark(self) -> Write:
        return Write.put(IdWatermarkRecord(self._max_id))

    def _parse(self, record: SchemaRecord) -> ParsedSchema:
        parsed = self._parsed.get(record.schema_id)
        if parsed is None:
            parsed = self._parsed[record.schema_id] = load_schema(record.schema)
        return parsed


def _deleted(record: SchemaRecord) -> SchemaRecord:
    return SchemaRecord(record.subject, record.version, record.schema_id, record.schema, True)


def version_payload(record: SchemaRecord) -> dict[str, Any]:
    """The JSON body Confluent's registry returns for one subject version."""
    return {
        "subject": record.subject,
        "version": record.version,
        "id": record.schema_id,
        "schema": record.schema,
    }
