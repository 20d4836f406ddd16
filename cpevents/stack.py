"""The local-stack supervisor: Kafka plus every service as a child process, stopped together.

This and the CLI are the only places that wire components together. Each service runs as
``python -m cpevents <command>`` so it is exactly what an operator would run on its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cpevents.localkafka.broker import (
    BrokerError,
    default_broker,
    die_with_parent,
    free_port,
    is_ready,
)
from cpevents.localkafka.resolve import kafka_cluster
from plumbing.kafka.topic_admin import ensure_topics
from plumbing.settings import Settings
from schemas.secrets import generate_encryption_key

ReadyCheck = Callable[[], bool]


class StackError(RuntimeError):
    """A service of the local stack failed to start."""


def http_ok(url: str) -> ReadyCheck:
    """Ready once ``url`` answers with a status below 500."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return int(response.status) < 500
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except OSError:
            return False

    return check


def group_ready(settings: Settings, group_id: str) -> ReadyCheck:
    """Ready once consumer group ``group_id`` is stable with at least one member."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    from plumbing.kafka.clients import admin_config

    admin = AdminClient(admin_config(settings))

    def check() -> bool:
        try:
            description = admin.describe_consumer_groups([group_id])[group_id].result(timeout=5)
        except Exception:
            return False
        return bool(description.state == ConsumerGroupState.STABLE and description.members)

    return check


@dataclass
class Service:
    """One child process of the stack."""

    name: str
    args: list[str]
    ready: ReadyCheck | None = None
    url: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_path: Path | None = None

    def log_tail(self, lines: int = 25) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class StackPorts:
    """Where the stack's HTTP services listen."""

    registry: int
    gateway: int
    streams_web: int
    delivery_web: int = 6067  # the delivery worker's /metrics and /healthz

    @classmethod
    def free(cls) -> StackPorts:
        return cls(
            registry=free_port(),
            gateway=free_port(),
            streams_web=free_port(),
            delivery_web=free_port(),
        )


def dev_environment(settings: Settings, home: Path) -> dict[str, str]:
    """Settings the dev stack fills in when the user has not: a persisted secret key and admin
    token (so webhooks survive restarts) and loopback delivery allowed (the demo receivers)."""
    home.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    if settings.secret_key is None:
        env["CPEVENTS_SECRET_KEY"] = _persisted(home / "dev-secret.key", generate_encryption_key)
    if settings.admin_token is None:
        env["CPEVENTS_ADMIN_TOKEN"] = _persisted(
            home / "dev-admin.token", lambda: "dev_" + os.urandom(16).hex()
        )
    if settings.portal_key is None:  # portal links survive restarts of the dev stack
        env["CPEVENTS_PORTAL_KEY"] = _persisted(
            home / "dev-portal.key", lambda: os.urandom(32).hex()
        )
    env.setdefault("CPEVENTS_DELIVERY_ALLOWED_NETWORKS", '["127.0.0.0/8"]')
    return env


def throwaway_environment(admin_token: str) -> dict[str, str]:
    """Settings for a stack that lives for one run (demo, benchmarks): a fresh secret key, the
    given admin token, loopback delivery allowed (their receivers are local)."""
    return {
        "CPEVENTS_SECRET_KEY": generate_encryption_key(),
        "CPEVENTS_ADMIN_TOKEN": admin_token,
        "CPEVENTS_DELIVERY_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "CPEVENTS_PORTAL_KEY": os.urandom(32).hex(),
    }


def portal_link(
    gateway: str, admin_token: str, tenant_id: str | None = None, expires_in: int = 24 * 3600
) -> str:
    """A portal link from the running ``gateway`` (``POST /v1/portal-links``): an operator's
    (every tenant) unless ``tenant_id`` is given."""
    body: dict[str, object] = {"expires_in": expires_in}
    if tenant_id is not None:
        body["tenant_id"] = tenant_id
    request = urllib.request.Request(
        f"{gateway}/v1/portal-links",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        url: str = json.loads(response.read())["url"]
        return url


def _persisted(path: Path, make: Callable[[], str]) -> str:
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


class LocalStack:
    """Start Kafka (unless configured), create topics, start services; stop all on exit."""

    def __init__(
        self,
        settings: Settings,
        services: Callable[[Settings, StackPorts], list[Service]],
        ports: StackPorts,
        log_dir: Path,
        extra_env: Mapping[str, str] | None = None,
        ephemeral_kafka: bool = False,
    ) -> None:
        self.base_settings = settings
        self.settings = settings
        self._make_services = services
        self.ports = ports
        self.log_dir = log_dir
        self._extra_env = dict(extra_env or {})
        self._ephemeral_kafka = ephemeral_kafka
        self.services: list[Service] = []
        self._exit_stack = contextlib.ExitStack()

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self._extra_env)
        # Children must see the topics the supervisor created, so every setting that names or
        # shapes a topic is passed on explicitly.
        env.update(
            CPEVENTS_BOOTSTRAP_SERVERS=self.settings.bootstrap_servers or "",
            CPEVENTS_SCHEMA_REGISTRY_URL=self.settings.schema_registry_url,
            CPEVENTS_TOPIC_PREFIX=self.settings.topic_prefix,
            CPEVENTS_REGISTRY_TOPIC=self.settings.registry_topic,
            CPEVENTS_RETRY_TIERS=json.dumps(list(self.settings.retry_tiers)),
            CPEVENTS_PARTITIONS=str(self.settings.partitions),
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self, on_progress: Callable[[str], None] = lambda _: None) -> None:
        try:
            servers = self._start_kafka(on_progress)
            self.settings = self.base_settings.model_copy(
                update={
                    "bootstrap_servers": servers,
                    "schema_registry_url": f"http://127.0.0.1:{self.ports.registry}",
                    **{
                        k.removeprefix("CPEVENTS_").lower(): v
                        for k, v in self._extra_env.items()
                        if k in ("CPEVENTS_ADMIN_TOKEN",)
                    },
                }
            )
            ensure_topics(self.settings)
            on_progress("topics ready")
            self.log_dir.mkdir(parents=True, exist_ok=True)
            for service in self._make_services(self.settings, self.ports):
                self._spawn(service)
                self._await_ready(service)
                on_progress(f"{service.name} ready" + (f" at {service.url}" if service.url else ""))
        except BaseException:
            self.stop()
            raise

    def _start_kafka(self, on_progress: Callable[[str], None]) -> str:
        if self.base_settings.bootstrap_servers:
            on_progress(f"using Kafka at {self.base_settings.bootstrap_servers}")
            return self.base_settings.bootstrap_servers
        if self._ephemeral_kafka:
            servers = self._exit_stack.enter_context(kafka_cluster(self.base_settings))
            on_progress(f"Kafka ready at {servers}")
            return servers
        if self.base_settings.kafka_security_protocol != "PLAINTEXT":
            # The local broker started here is PLAINTEXT; the services would inherit the
            # security settings and be refused.
            raise StackError(
                f"CPEVENTS_KAFKA_SECURITY_PROTOCOL={self.base_settings.kafka_security_protocol} "
                "needs CPEVENTS_BOOTSTRAP_SERVERS (for a local secured broker: `cpevents kafka "
                "start --security sasl_ssl`, then source the env file it names)"
            )
        broker = default_broker(self.base_settings)
        if is_ready(broker.client_settings()):
            on_progress(f"using the running Kafka at {broker.bootstrap_servers}")
            return broker.bootstrap_servers
        try:
            broker.start()
        except BrokerError as exc:
            raise StackError(str(exc)) from None
        self._exit_stack.callback(broker.stop)
        on_progress(f"Kafka ready at {broker.bootstrap_servers}")
        return broker.bootstrap_servers

    def _spawn(self, service: Service) -> None:
        service.log_path = self.log_dir / f"{service.name}.log"
        log = service.log_path.open("ab")
        service.process = subprocess.Popen(
            [sys.executable, "-m", "cpevents", *service.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        self.services.append(service)

    def _await_ready(self, service: Service, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        assert service.process is not None
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                raise StackError(
                    f"{service.name} exited with code {service.process.returncode}:\n"
                    f"{service.log_tail()}"
                )
            if service.ready is None or service.ready():
                return
            time.sleep(0.2)
        raise StackError(f"{service.name} not ready after {timeout:.0f}s:\n{service.log_tail()}")

    def dead_services(self) -> list[Service]:
        """Services whose process has exited."""
        return [s for s in self.services if s.process is not None and s.process.poll() is not None]

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every service (last started first), SIGKILL what is left, then stop Kafka."""
        for service in reversed(self.services):
            if service.process is not None and service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for service in reversed(self.services):
            if service.process is None:
                continue
            try:
                service.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()
        self.services.clear()
        self._exit_stack.close()

    @contextlib.contextmanager
    def running(self, on_progress: Callable[[str], None] = lambda _: None) -> Iterator[LocalStack]:
        self.start(on_progress)
        try:
            yield self
        finally:
            self.stop()
