"""What `cpevents dev up` prints for copying survives an 80-column terminal: commands are
printed as they are, never folded inside a quoted JSON body or a header."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from cpevents.cli.dev import curl_examples, metrics_urls, print_commands
from cpevents.stack import Service


def test_curl_examples_are_printed_unfolded_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    console = Console(file=out, force_terminal=True)
    assert console.width == 80
    text = curl_examples("http://127.0.0.1:8080", "dev_" + "ab" * 16, "http://127.0.0.1:9000/hook")
    assert max(len(line) for line in text.splitlines()) > 80  # long enough to be folded
    print_commands(console, text)
    assert out.getvalue() == text + "\n"  # unchanged: no fold, no style codes


def test_metrics_urls_name_every_served_service() -> None:
    services = [
        Service("registry", [], url="http://127.0.0.1:8081"),
        Service("streams", [], url="http://127.0.0.1:6066"),
        Service("delivery", [], url="http://127.0.0.1:6067"),
        Service("nothing", []),
    ]
    assert metrics_urls(services) == [
        "http://127.0.0.1:8081/metrics",
        "http://127.0.0.1:6066/metrics",
        "http://127.0.0.1:6067/metrics",
    ]
