"""docker-compose.yml and the Dockerfile cannot run here (no Docker engine), so check what can be
checked: every service's command exists in the CLI with those options, ports agree with the
commands, environment names are real settings, dependencies and volumes resolve."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml

from cpevents.cli import app
from plumbing.settings import Settings
from registry.access import OPEN_PATHS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
OUR_SERVICES = {
    name: s for name, s in SERVICES.items() if s.get("image", "").startswith("ctrlplane")
}


def _resolve(argv: list[str]) -> tuple[Any, list[str]]:
    """The CLI command ``argv`` names and the arguments left for it. Duck-typed: typer may
    bring its own copy of click, so isinstance checks against ``click`` would not match."""
    command: Any = typer.main.get_command(app)
    rest = list(argv)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        assert sub is not None, f"`cpevents {' '.join(argv)}`: no command {rest[0]!r}"
        command, rest = sub, rest[1:]
    return command, rest


def test_our_services_are_all_there() -> None:
    assert {"registry", "gateway", "streams", "delivery", "topics"} <= set(OUR_SERVICES)
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:4.")
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


@pytest.mark.parametrize("name", sorted(OUR_SERVICES))
def test_service_command_exists_in_the_cli(name: str) -> None:
    command, rest = _resolve(OUR_SERVICES[name]["command"])
    # A group runs only if it has a callback of its own (`cpevents registry` serves; its
    # subcommands manage users).
    runnable = not hasattr(command, "commands") or getattr(command, "invoke_without_command", False)
    assert runnable, f"{name}: `{command.name}` is a group, not a command"
    assert (
        command.name
        == OUR_SERVICES[name]["command"][len(OUR_SERVICES[name]["command"]) - len(rest) - 1]
    )
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    flags = [arg for arg in rest if arg.startswith("--")]
    assert set(flags) <= options, f"{name}: unknown options {set(flags) - options}"


@pytest.mark.parametrize("name", sorted(OUR_SERVICES))
def test_published_ports_match_the_commands(name: str) -> None:
    service = OUR_SERVICES[name]
    command = service["command"]
    for mapping in service.get("ports", []):
        container_port = mapping.split(":")[-1]
        assert "--port" in command and command[command.index("--port") + 1] == container_port
        assert command[command.index("--host") + 1] == "0.0.0.0"


def test_kafka_and_the_registry_are_not_published() -> None:
    # Kafka is unauthenticated in this file, and the registry's Basic credentials travel in
    # clear: the compose network only. The gateway (bearer tokens) is the one published service.
    for name in ("kafka", "registry"):
        assert "ports" not in SERVICES[name], f"{name} must not publish ports"
    published = {name for name, service in SERVICES.items() if service.get("ports")}
    assert published == {"gateway"}


def test_the_override_example_binds_to_loopback_only() -> None:
    override = yaml.safe_load((ROOT / "docker-compose.override.example.yml").read_text())
    assert set(override["services"]) <= set(SERVICES)
    for name, service in override["services"].items():
        for mapping in service.get("ports", []):
            assert mapping.startswith("127.0.0.1:"), f"{name}: {mapping} is not loopback-only"


def test_environment_names_are_settings() -> None:
    fields = {f"CPEVENTS_{name.upper()}" for name in Settings.model_fields}
    for name, service in OUR_SERVICES.items():
        unknown = set(service["environment"]) - fields
        assert not unknown, f"{name}: {unknown} are not settings"
    env = next(iter(OUR_SERVICES.values()))["environment"]
    assert env["CPEVENTS_BOOTSTRAP_SERVERS"].startswith("kafka:")
    advertised = SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"PLAINTEXT://{env['CPEVENTS_BOOTSTRAP_SERVERS']}" in advertised
    assert env["CPEVENTS_SCHEMA_REGISTRY_URL"] == "http://registry:8081"


SETTINGS_VARIABLES = {f"CPEVENTS_{name.upper()}" for name in Settings.model_fields}


@pytest.mark.parametrize("file", ["docker-compose.yml", "docker-compose.override.example.yml"])
def test_every_cpevents_variable_in_compose_is_a_setting(file: str) -> None:
    # Keys, ${...} interpolations and comments alike: a misspelt name would be silently unset.
    named = set(re.findall(r"CPEVENTS_[A-Z0-9_]+", (ROOT / file).read_text()))
    assert named - SETTINGS_VARIABLES == set()


def test_the_registry_authenticates_users_of_a_mounted_auth_file() -> None:
    registry = SERVICES["registry"]
    auth_file = PurePosixPath(registry["environment"]["CPEVENTS_REGISTRY_AUTH_FILE"])
    mounts = [volume.split(":") for volume in registry.get("volumes", [])]
    # A bind mount of the file's directory, read-only (the registry never writes it).
    assert any(
        source.startswith("./") and auth_file.parent == PurePosixPath(target) and mode == "ro"
        for source, target, mode in mounts
    ), mounts
    # The probe carries no credentials: it must use a path the registry leaves open.
    probe = " ".join(registry["healthcheck"]["test"])
    [url] = re.findall(r"http://127\.0\.0\.1:8081[^'\s]*", probe)
    assert urlsplit(url).path in OPEN_PATHS - {"/"}


def test_the_registry_clients_get_credentials_from_the_environment() -> None:
    for name in ("gateway", "streams", "delivery"):
        environment = OUR_SERVICES[name]["environment"]
        # Interpolated, required: never a password in this file, never a silent anonymous client.
        assert environment["CPEVENTS_SCHEMA_REGISTRY_BASIC_AUTH"].startswith(
            "${CPEVENTS_SCHEMA_REGISTRY_BASIC_AUTH:?"
        ), name
        assert environment["CPEVENTS_SCHEMA_REGISTRY_URL"] == "http://registry:8081"


def test_dependencies_volumes_and_health_checks() -> None:
    for name, service in SERVICES.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], f"{dependency} has no healthcheck"
    for name in ("gateway", "streams", "delivery"):
        assert "topics" in SERVICES[name]["depends_on"]
    volume = SERVICES["kafka"]["volumes"][0].split(":")[0]
    assert volume in COMPOSE["volumes"]


def test_dockerfile_copies_every_package_and_runs_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("schemas", "producers", "streams", "delivery", "cpevents"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert 'ENTRYPOINT ["cpevents"]' in dockerfile
