"""``cpevents processors new``: the skeleton it writes runs, and its own test passes."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cpevents.cli import app


async def test_the_skeleton_and_its_test_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "skelpkg").mkdir()
    (tmp_path / "skelpkg" / "__init__.py").write_text("")
    result = CliRunner().invoke(app, ["processors", "new", "deploy_tally", "--dir", "skelpkg"])
    assert result.exit_code == 0, result.output
    assert "--processor skelpkg.deploy_tally" in result.output
    try:
        generated = importlib.import_module("skelpkg.test_deploy_tally")
        await generated.test_counts_deploy_events_per_tenant()
    finally:
        for name in [m for m in sys.modules if m.startswith("skelpkg")]:
            del sys.modules[name]
    again = CliRunner().invoke(app, ["processors", "new", "deploy_tally", "--dir", "skelpkg"])
    assert again.exit_code == 2 and "already exists" in again.output


def test_a_name_that_is_no_module_name_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["processors", "new", "class", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "NAME: 'class' is not a Python module name" in result.output
    assert list(tmp_path.iterdir()) == []
