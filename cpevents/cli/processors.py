"""``cpevents processors new NAME``: a stream processor module and its unit test, to edit."""

from __future__ import annotations

import keyword
from pathlib import Path
from typing import Annotated

import typer

from cpevents.cli import app
from cpevents.cli.common import console, err_console

processors_app = typer.Typer(help="Write stream processors (run them with `worker streams`).")
app.add_typer(processors_app, name="processors")

MODULE = '''"""Stream processor {name}: what it computes, and where it serves or writes it.

Run it: cpevents worker streams --processor <package>.{name}
"""

from __future__ import annotations

from typing import Any

import faust

from schemas.event import Event
from streams.app import StreamsContext


def install(ctx: StreamsContext) -> None:
    """Declare the agent, its table and its web page on ``ctx.app``."""
    app = ctx.app
    # Keyed by tenant (the event topics' key), so an entry lives with its tenant's partition.
    table = app.Table("{name}", default=int, key_type=str, partitions=ctx.settings.partitions)

    @app.agent(ctx.events(types=["deploy.*"]), name="{name}", concurrency=1)
    async def process(events: faust.StreamT[Event]) -> None:
        async for event in events:
            table[event.tenant_id] += 1

    @app.page("/{name}/{{tenant}}/")
    @app.table_route(table=table, match_info="tenant")
    async def view(web: Any, request: Any, tenant: str) -> Any:
        return web.json({{"tenant_id": tenant, "deploy_events": table[tenant]}})
'''

TEST = '''"""Processor {name}, run in memory (no Kafka)."""

from __future__ import annotations

from schemas.event import Event
from streams.testing import ProcessorTest

from {module} import install


async def test_counts_deploy_events_per_tenant() -> None:
    async with ProcessorTest(install) as harness:
        await harness.send(
            Event.new("deploy.started", "ten_a"),
            Event.new("health.failed", "ten_a"),  # not a deploy.* event: never seen
            Event.new("deploy.succeeded", "ten_a"),
        )
        assert harness.table("{name}")["ten_a"] == 2
'''


def skeleton(name: str, module: str) -> tuple[str, str]:
    """The processor module and its test for processor ``name`` importable as ``module``."""
    return MODULE.format(name=name), TEST.format(name=name, module=module)


@processors_app.command("new")
def processors_new(
    name: Annotated[str, typer.Argument(help="Module name of the processor, e.g. deploy_counts")],
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the module goes (a package directory)")
    ] = Path("."),
    tests: Annotated[
        Path | None, typer.Option("--tests", help="Where its test goes (default: next to it)")
    ] = None,
) -> None:
    """Write NAME.py (an agent over decoded deploy events, a table, a web page) and
    test_NAME.py (a unit test without Kafka), ready to edit."""
    if not name.isidentifier() or keyword.iskeyword(name):
        err_console.print(f"[red]error:[/red] NAME: {name!r} is not a Python module name")
        raise typer.Exit(2)
    test_dir = tests if tests is not None else directory
    module_path, test_path = directory / f"{name}.py", test_dir / f"test_{name}.py"
    existing = [str(p) for p in (module_path, test_path) if p.exists()]
    if existing:
        err_console.print(f"[red]error:[/red] {', '.join(existing)}: already exists, not touched")
        raise typer.Exit(2)
    module = ".".join((*_package_of(directory), name))
    source, test = skeleton(name, module)
    directory.mkdir(parents=True, exist_ok=True)
    test_dir.mkdir(parents=True, exist_ok=True)
    module_path.write_text(source)
    test_path.write_text(test)
    console.print(f"wrote {module_path} and {test_path}")
    console.print(f"run it: cpevents worker streams --processor {module}")


def _package_of(directory: Path) -> tuple[str, ...]:
    # The module's package as seen from the working directory (the usual sys.path entry).
    try:
        return directory.resolve().relative_to(Path.cwd().resolve()).parts
    except ValueError:
        return ()  # outside it: the user puts the directory on sys.path
