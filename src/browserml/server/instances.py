"""Several ``browserml serve`` processes on one host: start, SIGKILL, restart (issue 20).

A deployment runs one server per box behind a load balancer; tests and ``benchmarks/bench_scale.py``
run the same thing on loopback: separate processes on separate ports, sharing one PostgreSQL, one
blob folder and one admin token through the environment, each optionally pinned to CPUs
(``taskset``) so a benchmark can say which core did what. :class:`Instance` is a handle the caller
can kill without warning (SIGKILL: no shutdown hooks run, exactly like a crashed box) and start
again on the same port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BrowserMLError


@dataclass
class Instance:
    """One ``browserml serve`` child process on 127.0.0.1:``port``."""

    port: int
    data_dir: Path
    env: dict[str, str]
    cpus: str | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> Instance:
        """Start the process and return once its port accepts connections; raise
        BrowserMLError with the tail of its log when it exits or does not listen in time."""
        command = [sys.executable, "-m", "browserml.cli", "serve", "--host", "127.0.0.1",
                   "--port", str(self.port), "--data-dir", str(self.data_dir), "--proxy-headers"]
        if self.cpus is not None:
            command = ["taskset", "-c", self.cpus, *command]
        log = (self.data_dir / f"serve-{self.port}.log").open("ab")
        self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise BrowserMLError(f"browserml serve on port {self.port} exited: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise BrowserMLError(
                        f"browserml serve did not listen on {self.port}: {self.log_tail()}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the server (its validator processes exit with it) and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """Stop the server cleanly (SIGINT, as Ctrl-C), killing it after 30 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, chars: int = 2000) -> str:
        path = self.data_dir / f"serve-{self.port}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def instance_env(database_url: str, admin_token: str, **settings: object) -> dict[str, str]:
    """The environment every instance of one deployment shares: the PostgreSQL URL, the admin
    token, and any further ``BROWSERML_*`` settings (``telemetry_rate=0`` ->
    ``BROWSERML_TELEMETRY_RATE=0``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROWSERML_")}
    env["BROWSERML_DATABASE_URL"] = database_url
    env["BROWSERML_ADMIN_TOKEN"] = admin_token
    for name, value in settings.items():
        env[f"BROWSERML_{name.upper()}"] = str(value)
    return env


def start_instances(count: int, data_dir: Path, env: Mapping[str, str], ports: list[int],
                    cpus: list[str | None] | None = None) -> list[Instance]:
    """Start ``count`` instances on ``ports`` sharing ``data_dir`` (blobs) and ``env``; stop the
    ones already started if one fails."""
    started: list[Instance] = []
    try:
        for i in range(count):
            cpu = cpus[i] if cpus else None
            started.append(Instance(ports[i], Path(data_dir), dict(env), cpu).start())
    except BaseException:
        for instance in started:
            instance.stop()
        raise
    return started
