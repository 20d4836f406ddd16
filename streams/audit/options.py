"""The option rules of ``cpevents replay``: raw option values in, a validated replay plan out.

Pure (no Kafka, no settings, no clock): the caller passes "now", so every rule is unit-tested.
The CLI only parses the command line and prints; which options go together, their defaults and
their formats are decided here. An invalid value or combination raises ``ReplayOptionError``
naming the option (without its dashes) and the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from schemas.errors import ContractError
from streams.audit.filters import RecordFilter
from streams.audit.run import AuditTopic, ReplayRequest
from streams.audit.timerange import parse_range


class ReplayOptionError(ContractError):
    """An invalid ``cpevents replay`` option: ``field`` is the option name without ``--``."""


class OutputFormat(StrEnum):
    """How matching records are printed on stdout."""

    JSON = "json"  # one JSON object per line
    TABLE = "table"  # rich tables, in pages


@dataclass(frozen=True)
class ReplayPlan:
    """A validated replay: what to read and match, how to print it, and whether to redeliver."""

    request: ReplayRequest
    output_format: OutputFormat = OutputFormat.JSON
    follow: bool = False
    # The webhook whose current config narrows the event selection (to its tenant and
    # subscribed types) and which receives a redelivery. Only set on the events topic: on the
    # attempt log and dead letters ``--webhook`` is a plain record filter, in ``request``.
    target_webhook: str | None = None
    redeliver: bool = False
    confirm: bool = False  # ask before redelivering (a redelivery without --yes)
    # Only show (and count) what the target webhook's current types and payload filter would
    # have received; never sends anything.
    dry_run: bool = False

    def narrowed(self, selection: RecordFilter) -> ReplayPlan:
        """This plan with the request's selection replaced (by what the webhook may receive)."""
        return dataclasses.replace(
            self, request=dataclasses.replace(self.request, selection=selection)
        )


@dataclass(frozen=True)
class ReplayOptions:
    """The raw values of the ``cpevents replay`` options, as given on the command line.

    Defaults are the command's defaults; repeatable options are sequences (empty when absent).
    """

    since: str | None = None
    until: str | None = None
    tenants: Sequence[str] = ()
    types: Sequence[str] = ()
    instances: Sequence[str] = ()
    subsystems: Sequence[str] = ()
    topic: AuditTopic = AuditTopic.EVENTS
    output_format: str = "json"
    follow: bool = False
    webhook: str | None = None
    redeliver: bool = False
    yes: bool = False
    dry_run: bool = False

    def validate(self, now_ms: int) -> ReplayPlan:
        """The replay these options ask for; ReplayOptionError naming the first invalid option.

        ``now_ms`` anchors relative ``--since``/``--until`` values (and "now"). The rules are
        checked in a fixed order so the same command line always reports the same option.
        """
        try:
            output_format = self._check_combinations()
            plan = self._plan(output_format, now_ms)
        except ReplayOptionError:
            raise
        except ContractError as exc:
            # Filters and time ranges name their field after the option already (type, since,
            # until, subsystem): keep it, so every option problem is one exception type.
            raise ReplayOptionError(exc.field, exc.reason) from None
        return plan

    def _check_combinations(self) -> OutputFormat:
        """The rules between options (the format's value first); the chosen format."""
        if self.output_format not in {f.value for f in OutputFormat}:
            raise ReplayOptionError("format", f"must be json or table, got {self.output_format!r}")
        if self.follow and self.until is not None:
            # A followed replay never ends; an end would contradict it.
            raise ReplayOptionError("follow", "cannot be combined with --until")
        if self.redeliver and (
            self.webhook is None or self.topic is not AuditTopic.EVENTS or self.follow
        ):
            # Redelivery sends events (not attempts or dead letters) to one webhook, after
            # counting them for the confirmation: an endless --follow cannot be counted.
            raise ReplayOptionError(
                "redeliver", "needs --webhook, the events topic and no --follow"
            )
        if self.dry_run and (
            self.webhook is None
            or self.topic is not AuditTopic.EVENTS
            or self.follow
            or self.redeliver
        ):
            # A dry run counts what one webhook would have received from past events: it needs
            # the webhook and an end, and sending (--redeliver) is what it is the dry run of.
            raise ReplayOptionError(
                "dry-run", "needs --webhook and the events topic, without --follow or --redeliver"
            )
        if self.topic is not AuditTopic.EVENTS and self.subsystems:
            # The attempt log and the dead letters are one topic each, for every subsystem.
            raise ReplayOptionError("subsystem", "applies to the events topic only")
        if self.topic is AuditTopic.DELIVERIES and (self.types or self.instances):
            # Attempt records carry no event, so neither its type nor its instance.
            raise ReplayOptionError("type", "--type/--instance do not apply to --topic deliveries")
        return OutputFormat(self.output_format)

    def _plan(self, output_format: OutputFormat, now_ms: int) -> ReplayPlan:
        on_events = self.topic is AuditTopic.EVENTS
        selection = RecordFilter.of(
            tenants=self.tenants,
            types=self.types,
            instances=self.instances,
            # Off the events topic --webhook filters records; an empty id filters nothing.
            webhooks=[self.webhook] if self.webhook and not on_events else (),
        )
        request = ReplayRequest(
            topic=self.topic,
            time_range=parse_range(self.since, self.until, now_ms),
            selection=selection,
            subsystems=tuple(self.subsystems),
        )
        if on_events:
            # Unknown subsystem names fail here rather than when the topics are named.
            selection.subsystems(request.subsystems)
        return ReplayPlan(
            request=request,
            output_format=output_format,
            follow=self.follow,
            target_webhook=self.webhook if on_events else None,
            redeliver=self.redeliver,
            confirm=self.redeliver and not self.yes,
            dry_run=self.dry_run,
        )
