"""The option rules of ``cpevents replay`` (streams.audit.options), one test per rule and error."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from schemas.errors import ContractError
from schemas.event_types import EventType
from streams.audit import AuditTopic, RecordFilter, ReplayRequest, TimeRange
from streams.audit.options import OutputFormat, ReplayOptionError, ReplayOptions, ReplayPlan

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
WEBHOOK = "wh_01h455vb4pex5vsknk084sn02q"


def refused(options: ReplayOptions) -> ReplayOptionError:
    with pytest.raises(ReplayOptionError) as caught:
        options.validate(NOW)
    return caught.value


# -- defaults --------------------------------------------------------------------------------


def test_no_options_replay_every_event_topic_as_json_lines() -> None:
    plan = ReplayOptions().validate(NOW)
    assert plan == ReplayPlan(request=ReplayRequest())
    assert plan.request.topic is AuditTopic.EVENTS
    assert plan.request.time_range == TimeRange()
    assert plan.request.selection == RecordFilter()
    assert plan.output_format is OutputFormat.JSON
    assert not (plan.follow or plan.redeliver or plan.confirm)
    assert plan.target_webhook is None


def test_option_errors_are_contract_errors() -> None:
    # Callers that handle ContractError (field + reason) keep working.
    assert issubclass(ReplayOptionError, ContractError)


# -- --format --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [("json", OutputFormat.JSON), ("table", OutputFormat.TABLE)]
)
def test_formats(value: str, expected: OutputFormat) -> None:
    assert ReplayOptions(output_format=value).validate(NOW).output_format is expected


@pytest.mark.parametrize("value", ["csv", "JSON", ""])
def test_unknown_format(value: str) -> None:
    error = refused(ReplayOptions(output_format=value))
    assert (error.field, error.reason) == ("format", f"must be json or table, got {value!r}")


# -- --follow --------------------------------------------------------------------------------


def test_follow_is_open_ended() -> None:
    assert ReplayOptions(follow=True, since="1h").validate(NOW).follow
    error = refused(ReplayOptions(follow=True, until="1h"))
    assert (error.field, error.reason) == ("follow", "cannot be combined with --until")


def test_follow_with_until_now_is_still_an_end() -> None:
    assert refused(ReplayOptions(follow=True, until="now")).field == "follow"


# -- --redeliver -----------------------------------------------------------------------------


def test_redeliver_targets_the_webhook_and_asks_first() -> None:
    plan = ReplayOptions(redeliver=True, webhook=WEBHOOK).validate(NOW)
    assert plan.redeliver and plan.confirm
    assert plan.target_webhook == WEBHOOK
    # On the events topic the webhook narrows by its config later, not as a record filter.
    assert plan.request.selection.webhooks == frozenset()


def test_yes_skips_the_confirmation() -> None:
    plan = ReplayOptions(redeliver=True, webhook=WEBHOOK, yes=True).validate(NOW)
    assert plan.redeliver and not plan.confirm
    assert not ReplayOptions(yes=True).validate(NOW).confirm  # nothing to confirm


@pytest.mark.parametrize(
    "options",
    [
        ReplayOptions(redeliver=True),
        ReplayOptions(redeliver=True, webhook=WEBHOOK, topic=AuditTopic.DELIVERIES),
        ReplayOptions(redeliver=True, webhook=WEBHOOK, topic=AuditTopic.DLT),
        ReplayOptions(redeliver=True, webhook=WEBHOOK, follow=True),
    ],
    ids=["no webhook", "deliveries", "dlt", "follow"],
)
def test_redeliver_needs_webhook_events_topic_and_no_follow(options: ReplayOptions) -> None:
    error = refused(options)
    assert (error.field, error.reason) == (
        "redeliver",
        "needs --webhook, the events topic and no --follow",
    )


# -- --subsystem -----------------------------------------------------------------------------


def test_subsystems_choose_event_topics() -> None:
    plan = ReplayOptions(subsystems=["network", "instance"]).validate(NOW)
    assert plan.request.subsystems == ("network", "instance")


@pytest.mark.parametrize("topic", [AuditTopic.DELIVERIES, AuditTopic.DLT])
def test_subsystem_applies_to_the_events_topic_only(topic: AuditTopic) -> None:
    error = refused(ReplayOptions(topic=topic, subsystems=["instance"]))
    assert (error.field, error.reason) == ("subsystem", "applies to the events topic only")


def test_unknown_subsystem() -> None:
    error = refused(ReplayOptions(subsystems=["instance", "billing"]))
    assert (error.field, error.reason) == ("subsystem", "unknown subsystem 'billing'")


def test_unknown_subsystem_is_found_even_when_the_types_rule_it_out() -> None:
    # The type narrows the subsystems to read; a typo among the chosen ones is still an error.
    error = refused(ReplayOptions(types=["instance.created"], subsystems=["billing"]))
    assert error.field == "subsystem"


# -- --type / --instance ---------------------------------------------------------------------


def test_types_are_expanded_and_instances_kept() -> None:
    plan = ReplayOptions(types=["instance.*"], instances=["ins_1"], tenants=["ten_a"]).validate(NOW)
    selection = plan.request.selection
    assert selection.types == {str(t) for t in EventType if t.startswith("instance.")}
    assert selection.instances == {"ins_1"}
    assert selection.tenants == {"ten_a"}


def test_unknown_type_pattern() -> None:
    error = refused(ReplayOptions(types=["instanse.*"]))
    assert (error.field, error.reason) == (
        "type",
        "'instanse.*' matches no event type of the catalog",
    )


@pytest.mark.parametrize(
    "options",
    [
        ReplayOptions(topic=AuditTopic.DELIVERIES, types=["instance.*"]),
        ReplayOptions(topic=AuditTopic.DELIVERIES, instances=["ins_1"]),
    ],
    ids=["type", "instance"],
)
def test_type_and_instance_do_not_apply_to_the_attempt_log(options: ReplayOptions) -> None:
    error = refused(options)
    assert (error.field, error.reason) == (
        "type",
        "--type/--instance do not apply to --topic deliveries",
    )


def test_dead_letters_filter_on_type_and_instance() -> None:
    # A dead letter holds its task's event, so the event criteria apply to it.
    plan = ReplayOptions(topic=AuditTopic.DLT, types=["*.failed"], instances=["ins_1"]).validate(
        NOW
    )
    assert plan.request.selection.instances == {"ins_1"}
    assert plan.request.selection.types


# -- --webhook -------------------------------------------------------------------------------


@pytest.mark.parametrize("topic", [AuditTopic.DELIVERIES, AuditTopic.DLT])
def test_webhook_filters_attempts_and_dead_letters(topic: AuditTopic) -> None:
    plan = ReplayOptions(topic=topic, webhook=WEBHOOK).validate(NOW)
    assert plan.request.selection.webhooks == {WEBHOOK}
    assert plan.target_webhook is None
    assert plan.request.topic is topic


def test_webhook_on_events_is_a_target_without_redelivery() -> None:
    # Without --redeliver: a preview of what the webhook would receive.
    plan = ReplayOptions(webhook=WEBHOOK).validate(NOW)
    assert plan.target_webhook == WEBHOOK
    assert not plan.redeliver and not plan.confirm


def test_empty_webhook_id() -> None:
    # Off the events topic an empty id filters nothing; on it, it is still looked up (and
    # refused there as unknown).
    assert ReplayOptions(topic=AuditTopic.DLT, webhook="").validate(NOW).request.selection == (
        RecordFilter()
    )
    assert ReplayOptions(webhook="").validate(NOW).target_webhook == ""


def test_narrowed_replaces_the_selection_only() -> None:
    plan = ReplayOptions(since="2h", webhook=WEBHOOK, redeliver=True).validate(NOW)
    selection = RecordFilter(tenants=frozenset({"ten_a"}))
    narrowed = plan.narrowed(selection)
    assert narrowed.request.selection == selection
    assert narrowed.request.time_range == plan.request.time_range
    assert (narrowed.target_webhook, narrowed.redeliver, narrowed.confirm) == (WEBHOOK, True, True)


# -- --since / --until -----------------------------------------------------------------------


def test_time_range_is_relative_to_now() -> None:
    plan = ReplayOptions(since="2h", until="1h").validate(NOW)
    assert plan.request.time_range == TimeRange(NOW - 7_200_000, NOW - 3_600_000)
    until_now = ReplayOptions(since="2026-01-01T00:00:00Z", until="now").validate(NOW + 1)
    assert until_now.request.time_range == TimeRange(NOW, NOW + 1)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (ReplayOptions(since="yesterday"), "since"),
        (ReplayOptions(until="soon"), "until"),
        (ReplayOptions(since="1h", until="2h"), "until"),
    ],
)
def test_bad_time_range(options: ReplayOptions, field: str) -> None:
    assert refused(options).field == field


# -- order: the same command line always reports the same option ------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (ReplayOptions(output_format="csv", follow=True, until="1h"), "format"),
        (ReplayOptions(follow=True, until="1h", redeliver=True), "follow"),
        (ReplayOptions(redeliver=True, topic=AuditTopic.DLT, subsystems=["instance"]), "redeliver"),
        (
            ReplayOptions(topic=AuditTopic.DELIVERIES, subsystems=["instance"], types=["x"]),
            "subsystem",
        ),
        (ReplayOptions(topic=AuditTopic.DELIVERIES, types=["nope"], since="bad"), "type"),
        (ReplayOptions(types=["nope"], since="bad"), "type"),
        (ReplayOptions(since="bad", subsystems=["billing"]), "since"),
    ],
)
def test_first_broken_rule_is_reported(options: ReplayOptions, field: str) -> None:
    assert refused(options).field == field


# -- the command reports them unchanged ----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "csv"], "invalid option --format: must be json or table, got 'csv'"),
        (["--follow", "--until", "1h"], "invalid option --follow: cannot be combined with --until"),
        (["--topic", "dlt", "--subsystem", "instance"], "invalid option --subsystem: applies to"),
        (["--since", "1h", "--until", "2h"], "invalid option --until: must be later than --since"),
    ],
)
def test_cli_exit_code_and_message(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cpevents.cli import app

    # Option errors are reported before any connection: no broker or registry is needed.
    monkeypatch.delenv("CPEVENTS_BOOTSTRAP_SERVERS", raising=False)
    result = CliRunner().invoke(app, ["replay", *args])
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(message)
    assert result.stdout == ""
