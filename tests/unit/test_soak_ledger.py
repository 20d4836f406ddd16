"""The soak's books (bench/soak_ledger.py): what counts as delivered, settled, excused and lost.

The soak exits non-zero on a lost delivery; these cases keep that verdict honest."""

from __future__ import annotations

from bench.soak_ledger import DEAD_LETTERED, DELIVERED, DISABLED, Ledger

HOOK_PORT = 9001


def ledger_with(*webhooks: str) -> Ledger:
    ledger = Ledger()
    for offset, webhook in enumerate(webhooks):
        ledger.webhook_of_port[HOOK_PORT + offset] = webhook
    return ledger


def test_a_delivery_received_with_a_2xx_is_delivered_once_and_repeats_are_duplicates() -> None:
    ledger = ledger_with("wh_a")
    ledger.published("evt_1", 10.0, ["wh_a"], confirmed=True)
    ledger.receipt(10.5, "evt_1", "msg_evt_1", HOOK_PORT, 200)
    ledger.receipt(11.0, "evt_1", "msg_evt_1", HOOK_PORT, 204)  # a redelivery, same id
    ledger.receipt(11.5, "evt_1", "msg_other", HOOK_PORT, 200)  # a second, different id
    assert ledger.verdict() == {DELIVERED: 1}
    assert ledger.lost() == 0
    assert ledger.totals.delivered == 1
    assert (ledger.totals.duplicates_same_id, ledger.totals.duplicates_other_id) == (1, 1)
    assert list(ledger.latencies) == [0.5]


def test_a_failed_answer_does_not_settle_and_an_unsettled_delivery_is_lost() -> None:
    ledger = ledger_with("wh_a")
    ledger.published("evt_1", 10.0, ["wh_a"], confirmed=True)
    ledger.receipt(10.5, "evt_1", "msg_evt_1", HOOK_PORT, 503)
    assert ledger.totals.failed_answers[503] == 1
    assert ledger.verdict() == {"lost (never routed)": 1}
    ledger.routed("evt_1", "wh_a", 11.0)
    assert ledger.verdict() == {"lost (routed, no outcome)": 1}
    assert ledger.lost() == 1
    assert ledger.lost_samples() == ["evt_1|wh_a routed=True outcome=None"]


def test_dead_letters_and_disabled_webhooks_settle_with_their_reasons() -> None:
    ledger = ledger_with("wh_a", "wh_b", "wh_c")
    for event in ("evt_1", "evt_2", "evt_3"):
        ledger.published(event, 10.0, ["wh_a", "wh_b", "wh_c"], confirmed=True)
    ledger.dead_letter("evt_1", "wh_a", "retries exhausted after 5 attempts: HTTP 503")
    ledger.attempt("evt_1", "wh_b", DEAD_LETTERED, "HTTP 400")
    ledger.attempt("evt_1", "wh_c", DISABLED, "HTTP 410 Gone: the endpoint asked to be removed")
    verdict = ledger.verdict()
    assert verdict[DEAD_LETTERED] == 2 and verdict[DISABLED] == 1
    assert ledger.totals.dead_letter_reasons == {"retries exhausted after # attempts: HTTP #": 1}
    # wh_c is disabled now: its unsent deliveries are excused, the others' are lost.
    assert verdict["unsent, webhook disabled"] == 2
    assert verdict["lost (never routed)"] == 4
    assert ledger.pending() == 4


def test_a_deleted_webhooks_unsent_deliveries_are_excused_not_lost() -> None:
    ledger = ledger_with("wh_a")
    ledger.published("evt_1", 10.0, ["wh_a"], confirmed=True)
    ledger.deleted.add("wh_a")
    assert ledger.verdict() == {"unsent, webhook deleted": 1}
    assert ledger.lost() == 0


def test_the_attempt_log_saying_delivered_without_a_receipt_is_lost() -> None:
    ledger = ledger_with("wh_a")
    ledger.published("evt_1", 10.0, ["wh_a"], confirmed=True)
    ledger.attempt("evt_1", "wh_a", DELIVERED, None)
    assert ledger.verdict() == {"lost (attempt log says delivered, never received)": 1}
    assert ledger.lost() == 1


def test_a_delivery_arriving_before_its_publish_returned_is_recognised() -> None:
    ledger = ledger_with("wh_new")
    ledger.sending("evt_1", 10.0)
    # A webhook created during the run: expected only once delivered or routed.
    ledger.receipt(10.2, "evt_1", "msg_evt_1", HOOK_PORT, 200)
    ledger.published("evt_1", 10.0, [], confirmed=True)
    assert ledger.verdict() == {DELIVERED: 1}
    assert ledger.totals.untracked_receipts == 0


def test_unconfirmed_publishes_and_foreign_events_are_not_expected() -> None:
    ledger = ledger_with("wh_a")
    ledger.published("evt_1", 10.0, ["wh_a"], confirmed=False)
    ledger.routed("evt_probe", "wh_a", 11.0)  # a warm-up probe the soak did not publish
    ledger.receipt(11.5, "evt_probe", "msg_probe", HOOK_PORT, 200)
    assert ledger.verdict() == {}
    assert ledger.totals.unconfirmed == 1
    assert ledger.totals.untracked_receipts == 1


def test_pending_counts_only_deliveries_expected_before_the_cutoff() -> None:
    ledger = ledger_with("wh_a")
    ledger.published("evt_old", 10.0, ["wh_a"], confirmed=True)
    ledger.published("evt_new", 100.0, ["wh_a"], confirmed=True)
    assert ledger.pending(older_than=50.0) == 1
    assert ledger.pending() == 2
