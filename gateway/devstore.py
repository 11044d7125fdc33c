"""An embedded S3 + KMS (moto in server mode) on 127.0.0.1, for dev mode and the tests. Never used in `serve`."""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # The embedded store must not outlive the gateway that started it, even if the gateway is killed.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url: str, process: subprocess.Popen, timeout_seconds: float, what: str,
                       any_status: bool = True) -> None:
    """Poll `url` until it answers (any HTTP status, or only 2xx), the process exits, or time runs out."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            if any_status:
                return
            time.sleep(0.1)
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start serving {url} within {timeout_seconds} s")


class MotoServer:
    """`moto_server` as a child process; `url` once started."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None

    def start(self, timeout_seconds: float = 30) -> "MotoServer":
        env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent)
        try:
            wait_until_serving(self.url + "/moto-api/", self._process, timeout_seconds, "moto_server")
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None
