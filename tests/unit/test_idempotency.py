"""The Idempotency-Key claim table: first live claim wins, in topic order, judged on record
times; answers expire after the TTL; records and keys encode unambiguously."""

from __future__ import annotations

import pytest

from producers.gateway.idempotency import Entry, Table, check_key, fingerprint, record_key
from producers.gateway.problems import Problem

TTL, CLAIM = 60_000, 1_000


def claimed(claim: str, at: int, fp: str = "f") -> Entry:
    return Entry("claimed", claim, fp, at)


def done(claim: str, at: int, fp: str = "f") -> Entry:
    return Entry("done", claim, fp, at, 202, {"ids": [claim]})


def test_the_first_live_claim_wins_and_only_its_outcome_counts() -> None:
    table = Table(TTL, CLAIM)
    table.apply("k", claimed("a", 100))
    table.apply("k", claimed("b", 150))  # a duplicate's claim, later in the partition
    assert table.get("k", 200) == claimed("a", 100)
    table.apply("k", done("b", 150))  # never happens in the protocol; ignored if it did
    assert table.get("k", 200) == claimed("a", 100)
    table.apply("k", done("a", 100))
    assert table.get("k", 200) == done("a", 100)
    table.apply("k", claimed("c", 100 + TTL - 1))  # the answer is still live
    assert table.get("k", 100 + TTL - 1) == done("a", 100)


def test_answers_and_abandoned_claims_expire() -> None:
    table = Table(TTL, CLAIM)
    table.apply("k", claimed("a", 0))
    assert table.get("k", CLAIM - 1) is not None
    assert table.get("k", CLAIM) is None  # its gateway died: the key is free again
    table.apply("k", claimed("b", CLAIM))  # judged on the record's time, not a reader's clock
    assert table.get("k", CLAIM) == claimed("b", CLAIM)
    table.apply("k", done("b", CLAIM))
    assert table.get("k", CLAIM + TTL - 1) is not None
    assert table.get("k", CLAIM + TTL) is None


def test_a_release_frees_the_key_for_a_retry() -> None:
    table = Table(TTL, CLAIM)
    table.apply("k", claimed("a", 0))
    table.apply("k", Entry("released", "other", "f", 0))  # not the winner's: ignored
    assert table.get("k", 1) is not None
    table.apply("k", Entry("released", "a", "f", 0))
    assert table.get("k", 1) is None
    table.apply("k", claimed("b", 2))
    assert table.get("k", 3) == claimed("b", 2)
    table.apply("k", None)  # a tombstone forgets the key
    assert table.get("k", 3) is None


def test_entries_round_trip_and_bad_records_are_refused() -> None:
    entry = done("a", 5)
    assert Entry.decode(entry.encode()) == entry
    for bad in (b"[]", b"{}", b"nope", b'{"state":"x","claim":"a","fingerprint":"f","at_ms":1}'):
        with pytest.raises(ValueError):
            Entry.decode(bad)


def test_keys_and_fingerprints() -> None:
    assert record_key("a", "b/c") != record_key("a/b", "c")
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert check_key("order-42") == "order-42"
    for bad in ("", "x" * 256, "has space", "ünï"):
        with pytest.raises(Problem) as caught:
            check_key(bad)
        assert caught.value.field == "Idempotency-Key"


def test_keys_past_the_ttl_are_forgotten_as_records_arrive() -> None:
    table = Table(TTL, CLAIM)
    for n in range(100):
        table.apply(f"old{n}", done(f"o{n}", 0))
    for n in range(5000):
        table.apply(f"new{n}", claimed(f"c{n}", TTL))
    assert len(table) == 5000  # the old answers are gone; none still live is
