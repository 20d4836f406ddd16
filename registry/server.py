"""Run the registry: in the caller's event loop (:func:`start_registry`) or in a background
thread with its own loop (:class:`RegistryThread`, for sync code, tests and the local stack)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import socket
import threading
from dataclasses import dataclass
from types import TracebackType

from aiohttp import web

from plumbing.http_server import ServerLimits, start_server
from plumbing.settings import Settings
from registry.app import DEFAULT_MAX_BODY_BYTES, create_app
from registry.auth import AuthFileWatcher
from registry.store import KafkaStore

AUTH_FILE_SETTING = "CPEVENTS_REGISTRY_AUTH_FILE"


class InsecureBindError(RuntimeError):
    """A non-loopback address without an auth file: anyone who reaches it could delete
    subjects or register schemas that stop the platform's consumers."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) only reaches this machine. A name counts if
    every address it resolves to is a loopback one; 0.0.0.0 and :: (every interface) do not."""
    host = host.strip().strip("[]")
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None)
    except OSError:
        return False  # binding will fail with a clearer error
    addresses = {info[4][0] for info in found}
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses
    )


def check_exposure(settings: Settings, host: str) -> AuthFileWatcher | None:
    """The users and permissions to enforce (None: no auth file). Raises InsecureBindError for
    a non-loopback ``host`` without an auth file, AuthFileError for a file that cannot be used.
    """
    if settings.registry_auth_file is not None:
        return AuthFileWatcher(settings.registry_auth_file)
    if not is_loopback(host):
        raise InsecureBindError(
            f"refusing to listen on {host!r} without authentication: it is not a loopback "
            f"address. Set {AUTH_FILE_SETTING} to a users file (create one with "
            "`cpevents registry add-user FILE USERNAME`), or listen on 127.0.0.1."
        )
    return None


@dataclass
class RegistryHandle:
    """A running registry: its base ``url``, its ``store`` (writer role, state)."""

    url: str
    store: KafkaStore
    runner: web.AppRunner

    async def stop(self) -> None:
        """Stop serving, leave the writer election (another instance takes over) and the topic."""
        await self.runner.cleanup()
        await asyncio.to_thread(self.store.stop)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _advertised(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def start_registry(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8081,
    *,
    advertised_url: str | None = None,
    topic: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> RegistryHandle:
    """Bind ``host:port`` (0 picks a free port), replay the registry topic (created if missing,
    ``settings.registry_topic`` unless ``topic``), join the writer election, then serve.

    ``advertised_url`` is where other instances forward writes to this one (default: the bound
    address; set it when binding 0.0.0.0 behind another name).

    With ``settings.registry_auth_file`` every request is authenticated and authorized against
    it; without one only a loopback ``host`` is accepted (InsecureBindError otherwise).
    """
    auth = check_exposure(settings, host)
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    url = _advertised(host, bound_port)
    store = KafkaStore(settings, advertised_url=advertised_url or url, topic=topic)
    try:
        await asyncio.to_thread(store.start)
    except BaseException:
        sock.close()
        await asyncio.to_thread(store.stop)
        raise
    # The same limits as the gateway's against slow and greedy clients (plumbing.http_server).
    limits = ServerLimits(
        header_timeout=settings.registry_header_timeout,
        keepalive_timeout=settings.registry_keepalive_timeout,
        max_connections=settings.registry_max_connections,
    )
    app = create_app(store, max_body_bytes=max_body_bytes, auth=auth)
    try:
        runner, _site = await start_server(app, host, bound_port, limits, sock=sock)
    except BaseException:
        sock.close()
        await asyncio.to_thread(store.stop)
        raise
    return RegistryHandle(url=url, store=store, runner=runner)


class RegistryThread:
    """The registry in a daemon thread with its own event loop, for synchronous callers::

    with RegistryThread(settings, port=0) as registry:
        use(registry.url)
    """

    def __init__(
        self,
        settings: Settings,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        topic: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self._settings = settings
        self._host = host
        self._port = port
        self._topic = topic
        self._max_body_bytes = max_body_bytes
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._handle: RegistryHandle | None = None

    @property
    def url(self) -> str:
        return self.handle.url

    @property
    def handle(self) -> RegistryHandle:
        if self._handle is None:
            raise RuntimeError("the registry is not running: call start() first")
        return self._handle

    @property
    def store(self) -> KafkaStore:
        return self.handle.store

    def start(self, timeout: float = 60.0) -> RegistryThread:
        """Start serving; raises whatever prevented the start (bind, Kafka, ...)."""
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="schema-registry", daemon=True
        )
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            start_registry(
                self._settings,
                self._host,
                self._port,
                topic=self._topic,
                max_body_bytes=self._max_body_bytes,
            ),
            self._loop,
        )
        try:
            self._handle = future.result(timeout)
        except BaseException:
            self._shutdown_loop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving and leave the election; safe to call twice."""
        handle, self._handle = self._handle, None
        if handle is not None:
            future = asyncio.run_coroutine_threadsafe(handle.stop(), self._loop)
            try:
                future.result(timeout)
            except concurrent.futures.TimeoutError:
                future.cancel()
        self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        if self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._loop.close()

    def __enter__(self) -> RegistryThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
