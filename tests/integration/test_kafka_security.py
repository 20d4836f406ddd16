"""Every client on a real SASL_SSL broker (TLS with a CA made for the run, SCRAM-SHA-512): the
client helpers, KafkaBus, gateway → router (Faust) → delivery as processes, replay and the DLT
commands, all with our registry running on that broker behind HTTP Basic auth (a writer user
for the services, a read-only one for replay); and each service refusing a wrong Kafka password,
an untrusted CA or a wrong registry password at start, naming the setting, instead of retrying
forever."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook as StandardWebhook

from cpevents.localkafka.broker import free_port
from cpevents.localkafka.tls import write_ca_certificate
from plumbing.kafka.clients import admin_config, consumer_config, producer_config
from plumbing.kafka.preflight import KafkaAccessError, check_kafka_access
from plumbing.settings import Settings
from producers.kafka_bus import KafkaBus
from schemas.event import Event
from schemas.event_types import EventType
from tests.fixtures_delivery import Receiver, eventually
from tests.fixtures_secure_kafka import SecureKafka, SecureRegistry, secure_env

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = f"adm_{uuid.uuid4().hex}"


def plain_text(output: str) -> str:
    """``output`` with rich's line wrapping undone (it wraps at 80 columns off a terminal)."""
    return re.sub(r"\s+", " ", output)


def registry_env(registry: SecureRegistry, user: str) -> dict[str, str]:
    """The variables that point a ``cpevents`` command at ``registry`` as ``user``
    (``user:password``)."""
    return {
        "CPEVENTS_SCHEMA_REGISTRY_URL": registry.url,
        "CPEVENTS_SCHEMA_REGISTRY_BASIC_AUTH": user,
    }


# -- librdkafka clients through the helpers ---------------------------------------------------


def test_producer_consumer_and_admin_use_tls_and_scram(secure_settings: Settings) -> None:
    topic = secure_settings.topics.events("deploy")
    producer = Producer(producer_config(secure_settings))
    producer.produce(topic, key=b"k", value=b"over TLS and SCRAM")
    assert producer.flush(30) == 0

    admin = AdminClient(admin_config(secure_settings))
    assert topic in admin.list_topics(timeout=10).topics

    consumer = Consumer(consumer_config(secure_settings, f"sec-{uuid.uuid4().hex}"))
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    deadline, values = time.monotonic() + 30, list[bytes | None]()
    while not values and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            values.append(message.value())
    consumer.close()
    assert values == [b"over TLS and SCRAM"]


def test_a_plaintext_client_gets_no_metadata(secure_kafka: SecureKafka) -> None:
    plain = Settings(bootstrap_servers=secure_kafka.bootstrap)
    admin = AdminClient(admin_config(plain, log_level=0))
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=3)
    with pytest.raises(KafkaAccessError, match="CPEVENTS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"):
        check_kafka_access(plain, timeout=3)


def test_the_startup_check_names_the_setting(
    secure_settings: Settings, secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    check_kafka_access(secure_settings, timeout=10)  # the right settings pass
    wrong = secure_settings.model_copy(update={"kafka_sasl_password": SecretStr("not-it")})
    started = time.monotonic()
    with pytest.raises(KafkaAccessError) as refused:
        check_kafka_access(wrong)
    assert time.monotonic() - started < 10  # at the first refusal, not at the timeout
    assert "CPEVENTS_KAFKA_SASL_PASSWORD" in str(refused.value)
    assert "not-it" not in str(refused.value)
    other_ca = write_ca_certificate(tmp_path / "other-ca.pem", "not the broker's CA")
    untrusted = secure_settings.model_copy(update={"kafka_ssl_ca_location": other_ca})
    with pytest.raises(KafkaAccessError, match="CPEVENTS_KAFKA_SSL_CA_LOCATION"):
        check_kafka_access(untrusted)


# -- KafkaBus ------------------------------------------------------------------------------------


async def test_kafka_bus_publishes_and_subscribes(
    secure_settings: Settings, secure_registry: SecureRegistry
) -> None:
    # No serde given: KafkaBus builds its own from the settings, registry credentials included.
    settings = secure_settings.model_copy(
        update={
            "schema_registry_url": secure_registry.url,
            "schema_registry_basic_auth": SecretStr(secure_registry.writer),
        }
    )
    received: list[Event] = []

    async def handler(event: Event) -> None:
        received.append(event)

    bus = KafkaBus(settings)
    try:
        bus.subscribe(handler, EventType.INSTANCE_CREATED, name="secure")
        sent = [Event.new(EventType.INSTANCE_CREATED, "ten_sec") for _ in range(3)]
        assert await bus.publish_many(sent) == sent
        await eventually(lambda: len(received) == 3, within=60, what="the subscription")
    finally:
        await bus.close()
    assert sorted(e.id for e in received) == sorted(e.id for e in sent)


# -- the services as processes ------------------------------------------------------------------


def cpevents(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cpevents", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cpevents", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status) < 500
    except OSError:
        return False


async def alive_until(
    processes: list[subprocess.Popen[str]], condition: Callable[[], bool | Awaitable[bool]]
) -> Callable[[], Awaitable[bool]]:
    """``condition``, failing at once (with the output) if one of ``processes`` exited."""

    async def check() -> bool:
        for process in processes:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                raise AssertionError(f"{process.args!r} exited {process.returncode}:\n{output}")
        result = condition()
        return result if isinstance(result, bool) else await result

    return check


def registry_subjects(registry: SecureRegistry, user: str) -> list[str]:
    """``GET /subjects`` as ``user``: the subjects that user may read."""
    request = urllib.request.Request(f"{registry.url}/subjects")
    token = base64.b64encode(user.encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        subjects: list[str] = json.load(response)
    return subjects


async def test_gateway_router_and_delivery_deliver_a_signed_event(
    secure_settings: Settings,
    secure_kafka: SecureKafka,
    secure_registry: SecureRegistry,
    receiver: Receiver,
) -> None:
    gateway_port = free_port()
    env = secure_env(
        secure_settings,
        secure_kafka,
        CPEVENTS_ADMIN_TOKEN=ADMIN_TOKEN,
        CPEVENTS_DELIVERY_ALLOWED_NETWORKS="127.0.0.0/8",
        **registry_env(secure_registry, secure_registry.writer),
    )
    services = [
        cpevents(env, "gateway", "--port", str(gateway_port)),
        cpevents(
            env, "worker", "streams", "--web-port", str(free_port()), "--session-timeout", "6"
        ),
        cpevents(env, "worker", "delivery", "--web-port", "0"),
    ]
    gateway = f"http://127.0.0.1:{gateway_port}"
    try:
        await eventually(
            await alive_until(services, lambda: http_ok(f"{gateway}/healthz")),
            within=60,
            what="the gateway",
        )
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as http:
            hook = {"tenant_id": "ten_sec", "url": receiver.url("/hook"), "events": ["deploy.*"]}
            async with http.post(f"{gateway}/v1/webhooks", json=hook) as response:
                assert response.status == 201, await response.text()
                secret = (await response.json())["secret"]
            event = {"type": "deploy.failed", "tenant_id": "ten_sec", "payload": {"tls": True}}
            async with http.post(f"{gateway}/v1/events", json=event) as response:
                assert response.status == 202, await response.text()
                [event_id] = (await response.json())["ids"]
        await eventually(
            await alive_until(services, lambda: bool(receiver.at("/hook"))),
            within=90,
            what="the signed POST",
        )
    finally:
        for process in services:
            process.terminate()
        for process in services:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
    request = receiver.at("/hook")[0]
    verified = StandardWebhook(secret).verify(request.body, request.headers)
    assert verified["id"] == event_id and verified["payload"] == {"tls": True}

    # The services registered their schemas in the secured registry (and nowhere else).
    topics = secure_settings.topics
    assert {f"{topics.events('deploy')}-value", f"{topics.deliveries}-value"} <= set(
        registry_subjects(secure_registry, secure_registry.reader)
    )
    # The audit and dead-letter commands read the same secured cluster; replay decodes with
    # the read-only registry user.
    audit_env = {**env, **registry_env(secure_registry, secure_registry.reader)}
    replayed = run_cli(audit_env, "replay", "--since", "1h", "--until", "now")
    assert replayed.returncode == 0, replayed.stderr
    assert event_id in replayed.stdout
    dead = run_cli(audit_env, "dlt", "list")
    assert dead.returncode == 0, dead.stderr
    assert "0 dead letters" in dead.stdout


# The commands that use the registry; `cpevents registry` uses Kafka only (it is the registry).
REGISTRY_CLIENTS: dict[str, Callable[[], list[str]]] = {
    "gateway": lambda: ["gateway", "--port", str(free_port())],
    "streams": lambda: ["worker", "streams", "--web-port", str(free_port())],
    "delivery": lambda: ["worker", "delivery", "--web-port", "0"],
    "replay": lambda: ["replay", "--since", "1h", "--until", "now"],
}
SERVICES: dict[str, Callable[[], list[str]]] = {
    **REGISTRY_CLIENTS,
    "registry": lambda: ["registry", "--port", str(free_port())],
}


def exits_at_start(env: dict[str, str], service: str, failure: str) -> str:
    """The output of ``service`` started with ``env``, asserting it exited non-zero within
    30 s."""
    started = time.monotonic()
    process = cpevents(env, *SERVICES[service]())
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"{service} still running after 30 s with a {failure}:\n{output}")
    assert process.returncode != 0, output
    assert time.monotonic() - started < 30
    return plain_text(output)


@pytest.mark.parametrize("service", sorted(SERVICES))
@pytest.mark.parametrize("failure", ["wrong password", "untrusted CA"])
def test_a_service_refused_by_kafka_exits_at_start_naming_the_setting(
    service: str,
    failure: str,
    secure_settings: Settings,
    secure_kafka: SecureKafka,
    tmp_path: Path,
) -> None:
    if failure == "wrong password":
        wrong_password = f"wrong-{uuid.uuid4().hex}"
        change = {"CPEVENTS_KAFKA_SASL_PASSWORD": wrong_password}
        setting = "CPEVENTS_KAFKA_SASL_PASSWORD"
    else:
        other_ca = write_ca_certificate(tmp_path / "other-ca.pem", "not the broker's CA")
        change = {"CPEVENTS_KAFKA_SSL_CA_LOCATION": str(other_ca)}
        setting = "CPEVENTS_KAFKA_SSL_CA_LOCATION"
    env = secure_env(secure_settings, secure_kafka, CPEVENTS_ADMIN_TOKEN=ADMIN_TOKEN, **change)
    output = exits_at_start(env, service, failure)
    assert setting in output, output
    secrets = [secure_kafka.password, *change.values()] if failure == "wrong password" else []
    for secret in secrets or [secure_kafka.password]:
        assert secret not in output


@pytest.mark.parametrize("service", sorted(REGISTRY_CLIENTS))
def test_a_service_refused_by_the_registry_exits_at_start_naming_the_setting(
    service: str,
    secure_settings: Settings,
    secure_kafka: SecureKafka,
    secure_registry: SecureRegistry,
) -> None:
    wrong = f"{secure_registry.writer.partition(':')[0]}:wrong-{uuid.uuid4().hex}"
    env = secure_env(
        secure_settings,
        secure_kafka,
        CPEVENTS_ADMIN_TOKEN=ADMIN_TOKEN,
        **registry_env(secure_registry, wrong),
    )
    output = exits_at_start(env, service, "wrong registry password")
    assert "CPEVENTS_SCHEMA_REGISTRY_BASIC_AUTH" in output, output
    assert "HTTP 401" in output, output
    assert wrong.partition(":")[2] not in output
