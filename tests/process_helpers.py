"""`chatbot serve` as a real subprocess, for crash, signal and multi-process tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

LISTENING = re.compile(r"listening on http://[^:]+:(\d+)/")


class ServerProcess:
    def __init__(self, data_dir: Path, *args: str, env: dict | None = None, open_files: int | None = None) -> None:
        """`open_files`: the server's limit on open files (soft and hard), as `ulimit -n` sets it."""
        self.data_dir = data_dir
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.open_files = open_files
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.stderr_lines: list[str] = []

    def start(self, timeout: float = 20.0) -> int:
        command = [sys.executable, "-m", "chatbot", "serve", "--port", str(self.port or 0),
                   "--data-dir", str(self.data_dir), "--log-format", "none", *self.args]
        self.proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                     env=self.env, preexec_fn=self._limit if self.open_files else None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError(f"server exited early ({self.proc.wait()}): {''.join(self.stderr_lines)}")
            self.stderr_lines.append(line)
            found = LISTENING.search(line)
            if found:
                self.port = int(found.group(1))
                return self.port
        raise RuntimeError(f"server did not start in {timeout}s: {''.join(self.stderr_lines)}")

    def _limit(self) -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))

    def cpu_seconds(self) -> float:
        """User and system CPU time the server has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout: float = 15.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def rest_of_stderr(self) -> str:
        return "".join(self.stderr_lines) + (self.proc.stderr.read() if self.proc else "")
