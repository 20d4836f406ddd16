"""The ``cpevents`` command line. Each component's commands live in a module of this package;
this file only assembles them."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="cpevents",
    help="Ctrl Plane Events: Avro events on Kafka, routed to tenants' webhooks, signed, retried.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)

worker_app = typer.Typer(
    help="Run a long-lived worker (streams router, delivery).", no_args_is_help=True
)
app.add_typer(worker_app, name="worker")

# Registration: one line per command module (imported for its side effect on `app`).
from cpevents.cli import delivery as _delivery  # noqa: E402,F401
from cpevents.cli import demo as _demo  # noqa: E402,F401
from cpevents.cli import dev as _dev  # noqa: E402,F401
from cpevents.cli import events as _events  # noqa: E402,F401
from cpevents.cli import gateway as _gateway  # noqa: E402,F401
from cpevents.cli import kafka as _kafka  # noqa: E402,F401
from cpevents.cli import processors as _processors  # noqa: E402,F401
from cpevents.cli import registry as _registry  # noqa: E402,F401
from cpevents.cli import replay as _replay  # noqa: E402,F401
from cpevents.cli import status as _status  # noqa: E402,F401
from cpevents.cli import streams as _streams  # noqa: E402,F401
