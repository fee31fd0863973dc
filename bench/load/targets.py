"""The servers under test, each run as a process of its own on 127.0.0.1.

`chatbot serve` runs with its defaults (SQLite, JSON logs on, argon2 with its
production parameters); only the limits that exist to stop one abusive client
are raised, since the load comes from one address and sends faster than a
person types.  Extra arguments (`--workers 2 --db postgresql://...`) are passed
through unchanged.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.load import procstat

REPO = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"listening on http://\[?([^\]/]+?)\]?:(\d+)/")

# Per-client protections, raised for a load that comes from one address and one program.
LOAD_LIMITS = ("--rate-limit", "1000000", "--rate-burst", "1000000",
               "--max-connections", "60000", "--max-connections-per-ip", "60000",
               "--new-sessions-per-ip", "100000000")


@dataclass(frozen=True)
class TargetSpec:
    """Which server to start: `kind` is "echo" or "chatbot"; `extra_args` go to `chatbot serve` as given."""

    kind: str
    extra_args: tuple[str, ...] = ()

    def command(self, data_dir: Path) -> list[str]:
        if self.kind == "echo":
            return [sys.executable, "-m", "bench.load.echo_server", "--host", "127.0.0.1", "--port", "0"]
        if self.kind == "chatbot":
            return [sys.executable, "-m", "chatbot", "serve", "--host", "127.0.0.1", "--port", "0",
                    "--data-dir", str(data_dir), "--log-format", "none", *LOAD_LIMITS, *self.extra_args]
        raise ValueError(f"target: unknown kind {self.kind!r} (expected 'echo' or 'chatbot')")


@dataclass
class Target:
    """A running server: its process, port and data folder."""

    spec: TargetSpec
    data_dir: Path
    proc: subprocess.Popen | None = None
    port: int = 0
    stderr_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.stderr_path = self.data_dir / f"{self.spec.kind}.stderr"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "Target":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        offset = self.stderr_path.stat().st_size if self.stderr_path.exists() else 0  # a restart appends
        with open(self.stderr_path, "ab") as stderr:
            self.proc = subprocess.Popen(self.spec.command(self.data_dir), cwd=REPO, stdout=subprocess.DEVNULL,
                                         stderr=stderr, stdin=subprocess.DEVNULL,
                                         env={**os.environ, "PYTHONPATH": str(REPO)})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.stderr_path, "rb") as stderr:
                stderr.seek(offset)
                text = stderr.read().decode("utf-8", "replace")
            found = LISTENING.search(text)
            if found:
                self.port = int(found.group(2))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.spec.kind} server exited with {self.proc.returncode} before listening:\n"
                                   f"{text[-2000:]}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.spec.kind} server did not listen within {timeout:g} s")

    def cpu_seconds(self) -> float:
        return procstat.cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return procstat.rss_bytes(self.pid)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> "Target":
        self.stop()
        return self.start()

    def __enter__(self) -> "Target":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
