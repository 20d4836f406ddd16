"""Loading the CLI (as every production worker does: ``cpevents worker delivery``) never loads the
dev-only local-stack tooling, which is imported by the commands that use it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Local stack supervisor, local broker (Maven jars), and the optional 'docker' extra.
DEV_ONLY = ("cpevents.stack", "cpevents.localkafka", "testcontainers", "docker")

COMMANDS = ["demo", "produce", "keygen", "gateway", "registry", "replay", "status"]
GROUPS = ["worker", "dlt", "dev", "webhooks", "kafka", "topics", "processors"]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    # A fresh interpreter: this test process may already have loaded anything.
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def dev_only(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == d or m.startswith(d + ".") for d in DEV_ONLY)]


def loaded_after(statements: str) -> list[str]:
    """The modules in ``sys.modules`` after ``import cpevents.cli`` and ``statements``."""
    result = run_python(
        "import json, sys\n"
        "import cpevents.cli\n"
        f"{statements}\n"
        "print('MODULES=' + json.dumps(sorted(sys.modules)))\n"
    )
    assert result.returncode == 0, result.stderr
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("MODULES=")]
    modules: list[str] = json.loads(line.removeprefix("MODULES="))
    assert "cpevents.cli.replay" in modules  # the check itself works: commands are loaded
    return modules


def test_importing_the_cli_loads_no_dev_only_tooling() -> None:
    assert dev_only(loaded_after("pass")) == []


@pytest.mark.parametrize("worker", ["delivery", "streams"])
def test_a_worker_command_line_loads_no_dev_only_tooling(worker: str) -> None:
    # Building the whole command tree (what parsing any command line does) imports nothing more.
    modules = loaded_after(
        "from cpevents.cli import app\n"
        f"app(['worker', {worker!r}, '--help'], prog_name='cpevents', standalone_mode=False)"
    )
    assert dev_only(modules) == []


def listed_commands(args: list[str]) -> list[str]:
    """The command names in the "Commands" panel of ``cpevents ARGS`` (a help page)."""
    result = run_python(f"from cpevents.cli import app; app({args!r}, prog_name='cpevents')")
    assert result.returncode == 0, result.stderr
    _, commands = result.stdout.split("Commands", 1)  # the panel after the options
    return sorted(re.findall(r"^\W+([a-z][a-z-]*)\s{2,}\S", commands, re.MULTILINE))


def test_help_lists_every_command() -> None:
    assert listed_commands(["--help"]) == sorted(COMMANDS + GROUPS)


@pytest.mark.parametrize(
    ("group", "subcommands"),
    [("dev", ["up"]), ("kafka", ["start", "status", "stop"]), ("worker", ["delivery", "streams"])],
)
def test_groups_keep_their_commands(group: str, subcommands: list[str]) -> None:
    assert listed_commands([group, "--help"]) == subcommands
