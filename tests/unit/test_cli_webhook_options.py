"""``cpevents webhooks create --filter/--header/--rate-limit``: the body sent to the gateway,
and bad option values refused (exit 2) naming the option, without echoing header values."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from cpevents.cli import app
from cpevents.cli import gateway as cli_gateway


def run(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, list[Any]]:
    sent: list[Any] = []

    def fake_request(url: str, token: str | None, method: str, path: str, body: Any = None) -> Any:
        sent.append(body)
        return 201, {"id": "hook_x", "headers": list(body.get("headers", {}))}

    monkeypatch.setattr(cli_gateway, "_request", fake_request)
    result = CliRunner().invoke(app, ["webhooks", "create", "https://example.com/h", *args])
    return result.exit_code, result.output, sent


def test_the_options_become_the_body(monkeypatch: pytest.MonkeyPatch) -> None:
    code, output, sent = run(
        monkeypatch,
        "--filter",
        '{"payload": {"region": "eu"}}',
        "--header",
        "X-Api-Key: s3cr3t-value",
        "--rate-limit",
        "10/20",
    )
    assert code == 0, output
    [body] = sent
    assert body["filter"] == {"payload": {"region": "eu"}}
    assert body["headers"] == {"X-Api-Key": "s3cr3t-value"}
    assert body["rate_limit"] == {"per_second": 10.0, "burst": 20}
    assert "s3cr3t-value" not in output


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("--filter", "{nope"), "--filter"),
        (("--header", "no-colon"), "--header"),
        (("--rate-limit", "fast"), "--rate-limit"),
    ],
)
def test_bad_values_exit_2_naming_the_option(
    monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], option: str
) -> None:
    code, output, sent = run(monkeypatch, *args)
    assert code == 2 and option in output and not sent
