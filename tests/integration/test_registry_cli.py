"""``cpevents registry`` serves the API on the given port until interrupted."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_registry_command_serves_until_interrupted(
    cli_env: dict[str, str], registry_topic: str
) -> None:
    port = _free_port()
    env = {**cli_env, "CPEVENTS_REGISTRY_TOPIC": registry_topic}
    process = subprocess.Popen(
        [sys.executable, "-m", "cpevents", "registry", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2) as reply:
                    assert json.load(reply) == {"compatibilityLevel": "BACKWARD"}
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "registry did not start"
                time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert f"127.0.0.1:{port}" in out and registry_topic in out and "writer" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
