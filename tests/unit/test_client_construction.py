"""Every Kafka client and every schema registry client is built through the helpers that carry
the security settings (plumbing/kafka/clients.py, plumbing/registry_client.py), so SASL, TLS and
registry credentials reach each of them. A component building ``Producer({...})`` or
``Serde(settings.schema_registry_url)`` itself would work on the unsecured local stack and fail
only against a secured cluster: this scan of the source tree catches it first."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "plumbing", "registry", "producers", "streams", "delivery", "cpevents")
EXCLUDED = ("producers/examples/",)  # client code for other projects, not run by ours

# Kafka client class -> the helper its configuration must come from.
KAFKA_CLIENTS = {
    "Producer": "producer_config",
    "SerializingProducer": "producer_config",
    "AsyncProducer": "producer_config",  # plumbing/kafka/async_producer.py wraps a Producer
    "Consumer": "consumer_config",
    "DeserializingConsumer": "consumer_config",
    "AdminClient": "admin_config",
}
# Where a Kafka client is built from a configuration the caller made (checked at that caller).
PASS_THROUGH = {("plumbing/kafka/async_producer.py", "Producer")}
# aiokafka clients are built by Faust from the app's broker credentials (streams/app.py).
NEVER_BUILT = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "AIOKafkaClient"}
REGISTRY_CLIENTS = {"Serde", "SchemaRegistryClient", "AsyncSchemaRegistryClient", "new_client"}
REGISTRY_CLIENT_HOMES = {"plumbing/registry_client.py", "schemas/serde.py"}


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _helper_of(node: ast.expr | None, assigned: dict[str, set[str]]) -> set[str]:
    """The config helpers ``node`` may come from: a call to one, or a variable assigned one."""
    if isinstance(node, ast.Call):
        name = _name(node.func)
        return {name} if name else set()
    if isinstance(node, ast.Name):
        return assigned.get(node.id, set())
    return set()


def _assignments(tree: ast.AST) -> dict[str, set[str]]:
    """name -> the functions it is assigned the result of, anywhere in the file (scopes are not
    told apart: a name reused for a hand-made config elsewhere in the file would be missed, not
    flagged; no false positives)."""
    assigned: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            helper = _name(node.value.func)
            for target in node.targets:
                if isinstance(target, ast.Name) and helper:
                    assigned.setdefault(target.id, set()).add(helper)
    return assigned


def _problem(node: ast.Call, path: str, assigned: dict[str, set[str]]) -> str | None:
    name = _name(node.func)
    where = f"{path}:{node.lineno}"
    if name in KAFKA_CLIENTS and (path, name) not in PASS_THROUGH:
        config = node.args[0] if node.args else None
        for keyword in node.keywords:
            if keyword.arg in ("conf", "config"):
                config = keyword.value
        if KAFKA_CLIENTS[name] not in _helper_of(config, assigned):
            return f"{where}: {name}(...) without {KAFKA_CLIENTS[name]}(settings)"
    elif name in NEVER_BUILT:
        return f"{where}: {name}(...) (Faust builds aiokafka clients, secured)"
    elif name in REGISTRY_CLIENTS and path not in REGISTRY_CLIENT_HOMES:
        return f"{where}: {name}(...) instead of plumbing.registry_client.serde_for"
    return None


def violations(source: str, path: str) -> list[str]:
    """Client constructions in ``source`` (the file ``path``, relative to the root) that do not
    go through the helpers, as ``path:line: what``."""
    tree = ast.parse(source, path)
    assigned = _assignments(tree)
    found = (
        _problem(node, path, assigned) for node in ast.walk(tree) if isinstance(node, ast.Call)
    )
    return [problem for problem in found if problem]


def source_files() -> list[Path]:
    return [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if not path.relative_to(ROOT).as_posix().startswith(EXCLUDED)
    ]


def test_every_client_is_built_through_the_helpers() -> None:
    found = [
        problem
        for path in source_files()
        for problem in violations(path.read_text(), path.relative_to(ROOT).as_posix())
    ]
    assert not found, "clients built without the security helpers:\n" + "\n".join(found)


def test_the_scan_sees_the_clients_of_today() -> None:
    # Not vacuous: the tree's constructions are found (a renamed package would empty the scan).
    calls = [
        node
        for path in source_files()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and _name(node.func) in KAFKA_CLIENTS
    ]
    assert len(calls) >= 15


@pytest.mark.parametrize(
    ("path", "source", "flagged"),
    [
        ("delivery/x.py", "Producer(producer_config(settings, **{'linger.ms': 1}))", False),
        ("delivery/x.py", "c = consumer_config(s, 'g')\nConsumer(c)", False),
        ("delivery/x.py", "admin = AdminClient(conf=admin_config(s))", False),
        ("delivery/x.py", "Producer({'bootstrap.servers': settings.bootstrap_servers})", True),
        ("delivery/x.py", "Consumer(producer_config(s))", True),
        ("delivery/x.py", "c = {'group.id': 'g'}\nConsumer(c)", True),
        ("delivery/x.py", "confluent_kafka.admin.AdminClient(config)", True),
        ("producers/x.py", "AsyncProducer({'bootstrap.servers': b})", True),
        ("plumbing/kafka/async_producer.py", "Producer(config)", False),
        ("streams/x.py", "AIOKafkaConsumer('topic', bootstrap_servers=b)", True),
        ("streams/x.py", "Serde(settings.schema_registry_url)", True),
        ("cpevents/cli/x.py", "SchemaRegistryClient({'url': u})", True),
        ("registry/x.py", "SchemaRegistryClient.new_client({'url': u})", True),
        ("plumbing/registry_client.py", "Serde(registry_client_config(settings))", False),
        ("delivery/x.py", "serde_for(settings)", False),
    ],
)
def test_the_scan_tells_helpers_from_hand_made_configurations(
    path: str, source: str, flagged: bool
) -> None:
    assert bool(violations(source, path)) is flagged
