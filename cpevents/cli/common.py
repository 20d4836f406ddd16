"""Helpers shared by the command modules."""

from __future__ import annotations

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from plumbing.environment import describe_settings_error
from plumbing.kafka.preflight import KafkaAccessError, check_kafka_access
from plumbing.registry_client import RegistryAccessError, check_registry_access
from plumbing.settings import Settings

console = Console()
err_console = Console(stderr=True)


def load_settings(check_kafka: bool = False, check_registry: bool = False) -> Settings:
    """Settings from the environment, with a readable error instead of a traceback.

    ``check_kafka``: services pass True, so that a wrong password, an untrusted CA or an
    unreachable cluster ends the process at start (exit 2) with the settings to check, instead
    of librdkafka retrying forever behind a live-looking service. ``check_registry``: the same
    for the schema registry (an authenticated request), passed by the services that encode or
    decode records, which would otherwise fail only at their first record.
    """
    try:
        settings = Settings()
    except ValidationError as exc:
        err_console.print(
            f"[red]configuration error:[/red]\n{escape(describe_settings_error(exc))}"
        )
        raise SystemExit(2) from None
    except Exception as exc:
        err_console.print(f"[red]configuration error:[/red] {escape(str(exc))}")
        raise SystemExit(2) from None
    if check_kafka:
        try:
            check_kafka_access(settings)
        except KafkaAccessError as exc:
            err_console.print(f"[red]cannot use Kafka:[/red] {escape(str(exc))}")
            raise SystemExit(2) from None
    if check_registry:
        try:
            check_registry_access(settings)
        except RegistryAccessError as exc:
            err_console.print(f"[red]cannot use the schema registry:[/red] {escape(str(exc))}")
            raise SystemExit(2) from None
    return settings


def configure_tracing(service: str) -> None:
    """Tracing on if ``OTEL_*`` asks for it (``plumbing.tracing``); a configuration it cannot
    honour (another protocol than http/protobuf, an unknown exporter) ends the process at start
    (exit 2)."""
    from plumbing.tracing import configure  # the SDK: only for the commands that serve

    try:
        configure(service)
    except ValueError as exc:
        err_console.print(f"[red]configuration error:[/red] {escape(str(exc))}")
        raise SystemExit(2) from None


#: Seconds a command (not a service) gives Kafka and the registry to answer: what does not
#: answer within seconds is down, not starting.
COMMAND_WAIT = 5.0


def check_reachable(settings: Settings, wait: float = COMMAND_WAIT) -> None:
    """For commands: Kafka or the registry not answering (or refusing us) ends the command with
    one line, unwrapped whatever the terminal's width, naming what and the setting to check;
    exit code 2."""
    try:
        check_kafka_access(settings, timeout=wait)
        check_registry_access(settings, timeout=wait)
    except (KafkaAccessError, RegistryAccessError) as exc:
        what = "Kafka" if isinstance(exc, KafkaAccessError) else "the schema registry"
        err_console.print(
            f"[red]cannot use {what}:[/red] {escape(' '.join(str(exc).split()))}", soft_wrap=True
        )
        raise SystemExit(2) from None
