"""A real Apache Kafka broker (KRaft, combined mode) run as a local JVM process from Maven jars.

Used when no ``CPEVENTS_BOOTSTRAP_SERVERS`` is set and no Docker engine is reachable.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from cpevents.localkafka.tls import BrokerTls, write_broker_tls
from plumbing.kafka.clients import admin_config
from plumbing.settings import Settings

log = logging.getLogger(__name__)

_POM_TEMPLATE = Path(__file__).with_name("pom.xml")
_PR_SET_PDEATHSIG = 1

# "plaintext": one PLAINTEXT listener for clients. "sasl_ssl": clients must use TLS (a CA made
# for the broker) and SCRAM-SHA-512 (user SCRAM_USER, a password made at storage format time).
Security = Literal["plaintext", "sasl_ssl"]
SECURITY_MODES: tuple[Security, ...] = ("plaintext", "sasl_ssl")
SCRAM_USER = "admin"
SCRAM_MECHANISM = "SCRAM-SHA-512"


class BrokerError(RuntimeError):
    """The local broker could not be set up, started or reached."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _require_tool(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BrokerError(
            f"'{name}' is not on PATH; the local Kafka broker needs it. {install_hint}"
        )
    return path


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # Several test sessions or CLI calls may resolve jars at once; Maven's local repo is not
    # safe for concurrent writers, so serialise them.
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_jars(settings: Settings) -> Path:
    """The directory holding Kafka's jars, resolving them with Maven on first use."""
    libs = settings.home / f"kafka-{settings.kafka_version}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = _require_tool("mvn", "Install Maven (Debian: apt-get install -y maven) and Java 17+.")
    with _file_lock(settings.home / "jars.lock"):
        if marker.exists():
            return libs
        pom = libs.parent / "pom.xml"
        pom.parent.mkdir(parents=True, exist_ok=True)
        pom.write_text(_POM_TEMPLATE.read_text().replace("KAFKA_VERSION", settings.kafka_version))
        result = subprocess.run(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={libs}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerError(
                f"Maven could not resolve Kafka {settings.kafka_version}:\n"
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        marker.touch()
    return libs


def _java() -> str:
    java = _require_tool(
        "java", "Install a Java 17+ runtime (Debian: apt-get install -y openjdk-17-jre-headless)."
    )
    version = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    major_text = version.split('"')[1].split(".")[0] if '"' in version else "0"
    if not major_text.isdigit() or int(major_text) < 17:
        raise BrokerError(f"Kafka 4 needs Java 17 or newer; found: {version.splitlines()[:1]}")
    return java


def formatted_cluster_id(log_dir: Path) -> str | None:
    """The cluster id the storage in ``log_dir`` was formatted with, if it was."""
    meta = log_dir / "meta.properties"
    if meta.exists():
        for line in meta.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == "cluster.id" and value.strip():
                return value.strip()
    return None


def new_cluster_id() -> str:
    """A random cluster id in Kafka's Uuid text form."""
    while True:
        # Kafka's Uuid text form: URL-safe base64 of 16 random bytes without padding. Like
        # Kafka's own Uuid.randomUuid, never one starting with "-": the storage tool's option
        # parser would take it for an option (1 start in 64 failed before).
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _kafka_cluster_id(log_dir: Path) -> str:
    """The cluster id the storage in ``log_dir`` was formatted with, or a new one.

    Formatting again with another id fails even with ``--ignore-formatted``, so a restart
    of a stopped broker must give the id it already has.
    """
    return formatted_cluster_id(log_dir) or new_cluster_id()


def die_with_parent() -> None:
    """``preexec_fn`` of a child that must not outlive its parent (Linux only: the child gets
    SIGTERM when the process that started it dies, even by SIGKILL), so a killed test run or
    supervisor leaves no orphan broker or service behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def is_ready(settings: Settings, timeout: float = 2.0) -> bool:
    """True once the cluster of ``settings`` (address and security) answers a metadata request
    with at least one broker."""
    # log_level 0: librdkafka would otherwise log every refused connection while Kafka boots.
    admin = AdminClient(admin_config(settings, log_level=0))
    try:
        metadata = admin.list_topics(timeout=timeout)
    except Exception:
        return False
    return bool(metadata.brokers)


#: Node timings of a cluster (``voters`` set) on loopback. A crashed node is fenced, and its
#: leaderships move, after ``broker.session.timeout.ms`` without a heartbeat (default 9 s); a
#: node in controlled shutdown, or restarted and caught up, waits a heartbeat for the
#: controller's answer (default 2 s). Brokers on one machine reach their controller in
#: microseconds, so a few missed 500 ms heartbeats is already an outage.
CLUSTER_TIMINGS = {
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "3000",
}

#: JVM flags of a short-lived node (``LocalBroker.quick_jvm``: test clusters). C1 only and the
#: serial collector: far less CPU to start and to warm up, for a lower peak throughput that a
#: test never reaches.
QUICK_JVM = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


def class_archive(libs: Path, java: str) -> Path:
    """The class-data sharing archive of quick nodes started from ``libs`` with ``java``: one
    per Kafka version and Java binary (an archive maps only into the JVM build that made it)."""
    binary = Path(java).resolve()
    tag = hashlib.sha1(f"{binary}:{binary.stat().st_mtime_ns}".encode()).hexdigest()[:10]
    return libs.parent / f"broker-classes-{tag}.jsa"


#: JVM flags of a long-lived broker (the CLI's, benchmarks, soak).
SERVER_JVM = ("-XX:+UseG1GC", "-XX:+UseStringDeduplication")
#: JVM flags of the one-shot tools (storage format).
TOOL_JVM = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


def internal_replication(voters: int) -> tuple[int, int]:
    """Replication factor and min ISR of the internal topics (offsets, transaction state) on a
    cluster of ``voters`` combined nodes: 3 and 2 from three nodes on, so that one node may be
    lost without losing a committed offset or refusing writes."""
    factor = min(3, voters)
    return factor, 2 if factor >= 3 else 1


@dataclass
class LocalBroker:
    """One KRaft broker+controller on loopback, with its data under ``data_dir``.

    Alone (``voters`` None) it is its own single-voter quorum, formatted ``--standalone``. As a
    node of a :class:`~cpevents.localkafka.cluster.LocalCluster`, ``voters`` maps every node id
    to its controller port: a static quorum (``controller.quorum.voters``) of combined nodes.
    """

    settings: Settings
    data_dir: Path
    port: int
    controller_port: int
    tie_to_parent: bool = False
    security: Security = "plaintext"
    node_id: int = 1
    #: node id -> controller port of every voter of a static quorum; None: a standalone broker.
    voters: Mapping[int, int] | None = None
    #: The cluster id to format with (every node of a cluster shares it); None: the one the
    #: storage has, or a new one.
    cluster_id: str | None = None
    #: JVM heap; None: ``settings.kafka_heap``.
    heap: str | None = None
    #: :data:`QUICK_JVM` flags instead of :data:`SERVER_JVM` (nodes of a test cluster).
    quick_jvm: bool = False

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def tls(self) -> BrokerTls:
        """The CA and keystore files of the SASL_SSL listener (made at start)."""
        return BrokerTls(
            ca_certificate=self.data_dir / "tls" / "ca.pem",
            keystore=self.data_dir / "tls" / "broker-keystore.pem",
        )

    @property
    def _password_file(self) -> Path:
        return self.data_dir / "scram-admin.password"

    def _scram_password(self) -> str:
        # Made once per data directory: SCRAM credentials are written into the storage when it
        # is formatted, so a restart must present the same password.
        if not self._password_file.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._password_file.touch(mode=0o600)
            self._password_file.write_text(secrets.token_hex(24))
        return self._password_file.read_text().strip()

    def client_environment(self) -> dict[str, str]:
        """The ``CPEVENTS_*`` variables a client needs to reach this broker (with the password:
        written to a 0600 file, never printed)."""
        env = {"CPEVENTS_BOOTSTRAP_SERVERS": self.bootstrap_servers}
        if self.security == "sasl_ssl":
            env.update(
                CPEVENTS_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
                CPEVENTS_KAFKA_SASL_MECHANISM=SCRAM_MECHANISM,
                CPEVENTS_KAFKA_SASL_USERNAME=SCRAM_USER,
                CPEVENTS_KAFKA_SASL_PASSWORD=self._scram_password(),
                CPEVENTS_KAFKA_SSL_CA_LOCATION=str(self.tls.ca_certificate),
            )
        return env

    @property
    def client_env_file(self) -> Path:
        """A shell file of :meth:`client_environment` (``set -a; . FILE; set +a``)."""
        return self.data_dir / "client.env"

    def client_settings(self) -> Settings:
        """This broker's settings with the address and client security to reach it."""
        updates: dict[str, object] = {"bootstrap_servers": self.bootstrap_servers}
        if self.security == "sasl_ssl":
            updates.update(
                kafka_security_protocol="SASL_SSL",
                kafka_sasl_mechanism=SCRAM_MECHANISM,
                kafka_sasl_username=SCRAM_USER,
                kafka_sasl_password=SecretStr(self._scram_password()),
                kafka_ssl_ca_location=self.tls.ca_certificate,
                # The broker's own security must not mix with whatever the caller configured.
                kafka_ssl_certificate_location=None,
                kafka_ssl_key_location=None,
                kafka_ssl_key_password=None,
                kafka_config=None,
            )
        else:
            updates.update(
                kafka_security_protocol="PLAINTEXT",
                kafka_sasl_mechanism=None,
                kafka_sasl_username=None,
                kafka_sasl_password=None,
                kafka_ssl_ca_location=None,
                kafka_ssl_certificate_location=None,
                kafka_ssl_key_location=None,
                kafka_ssl_key_password=None,
                kafka_config=None,
            )
        return self.settings.model_copy(update=updates)

    def _listener_config(self) -> dict[str, str]:
        if self.security == "plaintext":
            return {
                "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
                f"CONTROLLER://127.0.0.1:{self.controller_port}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
                "inter.broker.listener.name": "PLAINTEXT",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            }
        # One SASL_SSL listener for clients and the broker itself (inter-broker traffic), so no
        # listener on this port accepts a client without TLS and SCRAM. The controller listener
        # stays PLAINTEXT on loopback: only this JVM talks to it.
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{SCRAM_USER}" password="{self._scram_password()}";'
        )
        return {
            "listeners": f"SASL_SSL://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "SASL_SSL",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
            f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.tls.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.tls.ca_certificate),
            "ssl.client.auth": "none",
        }

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    def _quorum_config(self) -> dict[str, str]:
        if self.voters is None:
            return {"controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}"}
        factor, min_isr = internal_replication(len(self.voters))
        voters = ",".join(f"{node}@127.0.0.1:{port}" for node, port in sorted(self.voters.items()))
        return {
            "controller.quorum.voters": voters,
            **CLUSTER_TIMINGS,
            # Topics created without a factor (replication_factor -1: Faust's own topics, tools)
            # get the cluster's; acks=all then waits for min ISR replicas.
            "default.replication.factor": str(factor),
            "min.insync.replicas": str(min_isr),
        }

    def _internal_topics_config(self) -> dict[str, str]:
        factor, min_isr = internal_replication(len(self.voters) if self.voters else 1)
        return {
            "offsets.topic.replication.factor": str(factor),
            # Fewer internal partitions: a single dev broker starts and rebalances faster.
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": str(factor),
            "transaction.state.log.min.isr": str(min_isr),
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": str(factor),
            "share.coordinator.state.topic.min.isr": str(min_isr),
        }

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "server.properties"
        lines = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            **self._quorum_config(),
            **self._listener_config(),
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": str(self.settings.partitions),
            **self._internal_topics_config(),
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.cleaner.backoff.ms": "1000",
        }
        # 0600: with SASL_SSL it holds the broker's SCRAM password.
        config.touch(mode=0o600)
        config.write_text("".join(f"{key}={value}\n" for key, value in lines.items()))
        (self.data_dir / "log4j2.properties").write_text(
            "rootLogger.level = WARN\n"
            "rootLogger.appenderRef.file.ref = file\n"
            "appender.file.type = File\n"
            "appender.file.name = file\n"
            f"appender.file.fileName = {self.data_dir / 'kafka.log'}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
        )
        return config

    def _java_command(self, libs: Path, main: str, *args: str) -> list[str]:
        heap = self.heap or self.settings.kafka_heap
        broker = main == "kafka.Kafka"
        java = _java()
        flags: tuple[str, ...] = TOOL_JVM
        if broker:
            flags = (*QUICK_JVM, *self._class_sharing(libs, java)) if self.quick_jvm else SERVER_JVM
        return [
            java,
            f"-Xmx{heap}",
            f"-Xms{heap}" if broker else "-Xms64m",
            *flags,
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-Djava.awt.headless=true",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    @property
    def _dumped_classes(self) -> Path:
        return self.data_dir / "classes.jsa"

    def _class_sharing(self, libs: Path, java: str) -> tuple[str, ...]:
        # Loading and verifying Kafka's classes is much of a quick node's start: mapped from a
        # class-data sharing archive, a start takes 1.4 s of CPU instead of 2.4 s. Node 1
        # writes the archive when it stops cleanly (at JVM exit, see _keep_class_archive: 5 to
        # 15 s once per machine, so one node only).
        archive = class_archive(libs, java)
        if archive.exists():
            return (f"-XX:SharedArchiveFile={archive}",)
        self._dumped_classes.unlink(missing_ok=True)
        return (f"-XX:ArchiveClassesAtExit={self._dumped_classes}",) if self.node_id == 1 else ()

    def _keep_class_archive(self, clean_exit: bool) -> None:
        dumped = self._dumped_classes
        if not dumped.exists():
            return
        archive = class_archive(ensure_jars(self.settings), _java())
        if clean_exit and not archive.exists():
            # Staged beside the archive (data_dir may be on another filesystem), then renamed:
            # a node starting meanwhile never maps a half-written archive.
            staging = archive.with_name(f"{archive.name}.{uuid.uuid4().hex}")
            shutil.move(dumped, staging)
            os.replace(staging, archive)
            log.info("class-data sharing archive for quick Kafka starts saved to %s", archive)
        dumped.unlink(missing_ok=True)

    def running_pid(self) -> int | None:
        """The pid of this broker's JVM if it is alive."""
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and b"kafka.Kafka" not in cmdline.read_bytes():
            return None
        return pid

    def start(self, timeout: float = 120.0) -> None:
        """Resolve jars, format storage (idempotent) and start the JVM; return once it serves."""
        if self.running_pid() is not None:
            return
        process = self.launch()
        self.wait_ready(process, timeout)

    def _format(self, libs: Path, config: Path) -> None:
        if (self.data_dir / "logs" / "meta.properties").exists():
            # Formatted already: the storage tool would only say so (--ignore-formatted), after
            # a JVM start that a node restart need not wait for.
            return
        scram: list[str] = []
        if self.security == "sasl_ssl":
            # SCRAM users live in the cluster metadata: given at format time, the broker starts
            # with them (an already formatted storage keeps the ones it has).
            scram = [
                "--add-scram",
                f"{SCRAM_MECHANISM}=[name={SCRAM_USER},password={self._scram_password()}]",
            ]
        # A static quorum (voters) is formatted without any quorum option: the voters are in
        # the configuration. A standalone broker bootstraps a one-voter dynamic quorum.
        quorum = ["--standalone"] if self.voters is None else []
        fmt = subprocess.run(
            self._java_command(
                libs,
                "kafka.tools.StorageTool",
                "format",
                *quorum,
                "--ignore-formatted",
                "-t",
                self.cluster_id or _kafka_cluster_id(self.data_dir / "logs"),
                "-c",
                str(config),
                *scram,
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise BrokerError(f"formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}")

    def prepare(self) -> None:
        """Resolve jars, write the configuration and format the storage (idempotent). Safe in
        a worker thread, unlike :meth:`launch` (see there)."""
        libs = ensure_jars(self.settings)
        if self.security == "sasl_ssl" and not self.tls.valid_for(datetime.timedelta(days=1)):
            write_broker_tls(self.tls.ca_certificate.parent)
        self._format(libs, self._write_config())

    def launch(self, prepared: bool = False) -> subprocess.Popen[bytes]:
        """Start the JVM (after :meth:`prepare`, unless ``prepared``) without waiting for it to
        serve: the nodes of a cluster start together, none serves before a quorum.

        Call it from a thread that outlives the broker: with ``tie_to_parent`` the JVM gets
        SIGTERM when the *thread* that started it ends (PR_SET_PDEATHSIG).
        """
        if not prepared:
            self.prepare()
        libs = ensure_jars(self.settings)
        config = self.data_dir / "server.properties"
        out = (self.data_dir / "kafka.out").open("ab")
        process = subprocess.Popen(
            self._java_command(libs, "kafka.Kafka", str(config)),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent if self.tie_to_parent else None,
        )
        out.close()  # the child has its own descriptor
        self.pid_file.write_text(str(process.pid))
        self.client_env_file.touch(mode=0o600)
        self.client_env_file.write_text(
            "".join(f"{key}={value}\n" for key, value in self.client_environment().items())
        )
        return process

    def wait_ready(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        """Return once this broker answers a metadata request; stop it and raise
        :class:`BrokerError` if it exits or does not answer within ``timeout``."""
        client = self.client_settings()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive(process)
            if is_ready(client, timeout=1.0):
                return
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"Kafka did not answer metadata requests within {timeout:.0f}s")

    def check_alive(self, process: subprocess.Popen[bytes]) -> None:
        """Raise :class:`BrokerError` (naming its logs) if ``process`` has exited."""
        if process.poll() is not None:
            raise BrokerError(
                f"Kafka node {self.node_id} exited with code {process.returncode}; "
                f"see {self.data_dir / 'kafka.out'} and {self.data_dir / 'kafka.log'}"
            )

    def kill(self) -> bool:
        """SIGKILL the JVM (a crash, for fault drills). False if it was not running."""
        pid = self.running_pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        self._dumped_classes.unlink(missing_ok=True)
        return True

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the JVM (SIGTERM, then SIGKILL after ``timeout``). False if it was not running."""
        pid = self.running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        clean = True
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            clean = False
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        self._keep_class_archive(clean)
        return True


def _alive(pid: int) -> bool:
    # Reap our own child if it is one; otherwise probe with signal 0.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def default_broker(settings: Settings, security: Security = "plaintext") -> LocalBroker:
    """The broker ``cpevents kafka start`` manages: fixed ports, data under the home directory
    (one directory per security mode: SCRAM users are part of the formatted storage)."""
    return LocalBroker(
        settings=settings,
        data_dir=settings.home / ("broker" if security == "plaintext" else f"broker-{security}"),
        port=settings.kafka_port,
        controller_port=settings.kafka_controller_port,
        security=security,
    )
