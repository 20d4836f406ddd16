"""The soak's books: every expected delivery and what became of it. Pure, no I/O.

A delivery is the pair (event id, webhook id). It becomes *expected* in one of two ways:

- at publish time, for a webhook the soak never changes (its subscription and filter are known,
  so the soak computes the match itself): this catches an event the router never routed;
- when the router's task for it appears on the deliveries topic (webhooks created, re-filtered
  or deleted during the run, whose match depends on when the router saw the change).

It is *settled* by a 2xx answer recorded by a receiver (delivered), a dead letter or a
``dead_lettered`` attempt record (with its reason), or a ``disabled`` attempt record (410 Gone,
or the webhook deleted or inactive when the task came). An unsettled delivery of a webhook the
soak deleted, or that the worker disabled, is not lost either. Anything else still unsettled at
the end is lost.

Memory: one small slotted object per delivery (~200 bytes with its key), about 70 MB for a
30-minute soak at 150 events/s with ~1.5 matching webhooks each.
"""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field

DELIVERED = "delivered"
DEAD_LETTERED = "dead_lettered"
DISABLED = "disabled"
FINAL = frozenset((DELIVERED, DEAD_LETTERED, DISABLED))


class Entry:
    """One expected delivery."""

    __slots__ = ("expected_at", "outcome", "receipts", "routed", "webhook_header")

    def __init__(self, expected_at: float) -> None:
        self.expected_at = expected_at  # publish time (or routing time if unknown)
        self.routed = False
        self.outcome: str | None = None  # from the attempt log / dead letters
        self.receipts = 0  # 2xx answers recorded by a receiver
        self.webhook_header = ""  # webhook-id header of the first 2xx

    @property
    def settled(self) -> bool:
        return self.receipts > 0 or self.outcome is not None


def percentile(values: array[float] | list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Window:
    """What happened since the last report line."""

    published: int = 0
    delivered: int = 0
    latencies: list[float] = field(default_factory=list)
    healthy_latencies: list[float] = field(default_factory=list)  # always-healthy endpoints


@dataclass
class Totals:
    """Running totals of the whole run."""

    published: int = 0
    unconfirmed: int = 0  # publishes whose outcome is unknown (error, timeout): not expected
    delivered: int = 0
    duplicates_same_id: int = 0
    duplicates_other_id: int = 0
    failed_answers: Counter[int] = field(default_factory=Counter)  # non-2xx answers by status
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    router_dead_letters: Counter[str] = field(default_factory=Counter)
    disabled_reasons: Counter[str] = field(default_factory=Counter)
    untracked_receipts: int = 0  # POSTs of events the soak did not publish (warm-up probes)


def _reason_class(reason: str) -> str:
    """A reason with its numbers blanked, so equal causes count together."""
    text = "".join("#" if c.isdigit() else c for c in reason)
    while "##" in text:
        text = text.replace("##", "#")
    return text[:100]


class Ledger:
    """Expected deliveries, their outcomes, duplicates and latencies."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.published_at: dict[str, float] = {}  # event id -> publish time (all attempts)
        self.webhook_of_port: dict[int, str] = {}
        self.healthy: set[str] = set()  # webhooks whose endpoint never fails
        self.deleted: set[str] = set()
        self.disabled: set[str] = set()
        self.totals = Totals()
        self.window = Window()
        self.latencies: array[float] = array("d")
        self.healthy_latencies: array[float] = array("d")

    @staticmethod
    def key(event_id: str, webhook_id: str) -> str:
        return f"{event_id}|{webhook_id}"

    # -- inputs --------------------------------------------------------------------------------

    def sending(self, event_id: str, at: float) -> None:
        """An event is about to be published: its deliveries may arrive before the publish
        call returns (a slow acknowledgement), and must be recognised."""
        self.published_at[event_id] = at

    def published(self, event_id: str, at: float, webhooks: list[str], confirmed: bool) -> None:
        """An event was published (``confirmed``: the broker acknowledged it) and is expected
        at the stable ``webhooks`` it matches."""
        self.published_at[event_id] = at
        if not confirmed:
            self.totals.unconfirmed += 1
            return
        self.totals.published += 1
        self.window.published += 1
        for webhook_id in webhooks:
            self.entries.setdefault(self.key(event_id, webhook_id), Entry(at))

    def routed(self, event_id: str, webhook_id: str, now: float) -> None:
        """The router wrote the task for (event, webhook). Tasks of events the soak did not
        publish (warm-up probes, the worker's own ``webhook.disabled``) are not tracked."""
        if event_id not in self.published_at:
            return
        key = self.key(event_id, webhook_id)
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = Entry(self.published_at.get(event_id, now))
        entry.routed = True

    def attempt(self, event_id: str, webhook_id: str, status: str, error: str | None) -> None:
        """An attempt record; only final statuses settle."""
        if status not in FINAL:
            return
        entry = self.entries.get(self.key(event_id, webhook_id))
        if status == DISABLED:
            self.totals.disabled_reasons[_reason_class(error or "")] += 1
            if "410" in (error or "") or "inactive" in (error or ""):
                self.disabled.add(webhook_id)
        if entry is None:
            return
        if entry.outcome is None:
            entry.outcome = status

    def dead_letter(self, event_id: str, webhook_id: str, reason: str) -> None:
        self.totals.dead_letter_reasons[_reason_class(reason)] += 1
        entry = self.entries.get(self.key(event_id, webhook_id))
        if entry is not None and entry.outcome is None:
            entry.outcome = DEAD_LETTERED

    def router_dead_letter(self, reason: str) -> None:
        self.totals.router_dead_letters[_reason_class(reason)] += 1

    def receipt(self, at: float, event_id: str, header: str, port: int, status: int) -> None:
        """A POST a receiver answered with ``status``."""
        if not 200 <= status < 300:
            self.totals.failed_answers[status] += 1
            return
        webhook_id = self.webhook_of_port.get(port)
        entry = self.entries.get(self.key(event_id, webhook_id)) if webhook_id else None
        if entry is None:
            published = self.published_at.get(event_id)
            if published is None or webhook_id is None:
                self.totals.untracked_receipts += 1
                return
            # Routed before the observer saw the task: track it from here.
            entry = self.entries[self.key(event_id, webhook_id)] = Entry(published)
        if entry.receipts:
            if header == entry.webhook_header:
                self.totals.duplicates_same_id += 1
            else:
                self.totals.duplicates_other_id += 1
        else:
            entry.webhook_header = header
            self.totals.delivered += 1
            self.window.delivered += 1
            latency = at - entry.expected_at
            self.window.latencies.append(latency)
            self.latencies.append(latency)
            if webhook_id in self.healthy:
                self.window.healthy_latencies.append(latency)
                self.healthy_latencies.append(latency)
        entry.receipts += 1

    # -- reading -------------------------------------------------------------------------------

    def take_window(self) -> Window:
        window, self.window = self.window, Window()
        return window

    def excused(self, key: str) -> str | None:
        """Why an unsettled delivery is not lost: its webhook was deleted or disabled."""
        webhook_id = key.partition("|")[2]
        if webhook_id in self.deleted:
            return "deleted"
        if webhook_id in self.disabled:
            return DISABLED
        return None

    def pending(self, older_than: float | None = None) -> int:
        """Unsettled, unexcused deliveries (expected before ``older_than`` if given)."""
        count = 0
        for key, entry in self.entries.items():
            if entry.settled or (older_than is not None and entry.expected_at > older_than):
                continue
            if self.excused(key) is None:
                count += 1
        return count

    def verdict(self) -> dict[str, int]:
        """Every expected delivery by final state (``lost*`` ones fail the soak)."""
        states: Counter[str] = Counter()
        for key, entry in self.entries.items():
            if entry.receipts:
                states[DELIVERED] += 1
            elif entry.outcome == DELIVERED:
                # The worker saw a 2xx but no receiver recorded it: not a delivery we can prove.
                states["lost (attempt log says delivered, never received)"] += 1
            elif entry.outcome is not None:
                states[entry.outcome] += 1
            elif (excuse := self.excused(key)) is not None:
                states[f"unsent, webhook {excuse}"] += 1
            elif entry.routed:
                states["lost (routed, no outcome)"] += 1
            else:
                states["lost (never routed)"] += 1
        return dict(states)

    def lost(self) -> int:
        return sum(n for state, n in self.verdict().items() if state.startswith("lost"))

    def lost_samples(self, limit: int = 10) -> list[str]:
        """A few lost deliveries (event|webhook) to look up in the logs."""
        found = []
        for key, entry in self.entries.items():
            if entry.receipts or entry.outcome not in (None, DELIVERED):
                continue
            if entry.outcome is None and self.excused(key) is not None:
                continue
            found.append(f"{key} routed={entry.routed} outcome={entry.outcome}")
            if len(found) >= limit:
                break
        return found
