"""A local Redis server on loopback, for the demo environment and the test suite."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from hadr_portal.adapters.commands import run_command


@dataclass
class LocalRedis:
    directory: Path
    port: int

    @property
    def pidfile(self) -> Path:
        return self.directory / "redis.pid"

    @property
    def log_file(self) -> Path:
        return self.directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def start(self, *, timeout: float = 15) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.log_file.touch(mode=0o600, exist_ok=True)  # redis-server appends to it, keeping its mode
        self.log_file.chmod(0o600)
        run_command(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pidfile),
                "--logfile",
                str(self.log_file),
            ],
            timeout=30,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ping = run_command(["redis-cli", "-p", str(self.port), "ping"], check=False, timeout=5)
            if ping.stdout.strip() == "PONG":
                return
            time.sleep(0.1)
        raise RuntimeError(f"Redis on port {self.port} did not answer within {timeout:.0f} s; see {self.log_file}")

    def stop(self, *, timeout: float = 10) -> None:
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.05)
        if self.pid() is not None:
            os.kill(pid, signal.SIGKILL)
