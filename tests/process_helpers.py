"""`chatbot serve` as a real subprocess, for crash, signal and multi-process tests."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

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
        #: What the server wrote to stderr and was taken in so far (by `start` and `rest_of_stderr`).
        self.stderr_lines: list[str] = []
        # Read on a thread, so that a server that hangs without a word fails the test instead of
        # hanging it; None in the queue marks the end of the stream.
        self._unread: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 20.0) -> int:
        self._take_unread()  # what the server started before wrote after it was last read
        command = [sys.executable, "-m", "chatbot", "serve", "--port", str(self.port or 0),
                   "--data-dir", str(self.data_dir), "--log-format", "none", *self.args]
        self.proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                     env=self.env, preexec_fn=self._limit if self.open_files else None)
        self._unread = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(self.proc.stderr, self._unread), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._unread.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise RuntimeError(f"server exited early ({self.proc.wait()}): {''.join(self.stderr_lines)}")
            self.stderr_lines.append(line)
            found = LISTENING.search(line)
            if found:
                self.port = int(found.group(1))
                return self.port
        self.kill()  # not left running, and holding its port and data folder, after the test
        self.rest_of_stderr(timeout=5)
        raise RuntimeError(f"server did not start in {timeout}s: {''.join(self.stderr_lines)}")

    @staticmethod
    def _read(stderr: IO[str], unread: queue.Queue) -> None:
        for line in stderr:
            unread.put(line)
        unread.put(None)

    def _take_unread(self) -> None:
        while True:
            try:
                line = self._unread.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self.stderr_lines.append(line)

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

    def rest_of_stderr(self, timeout: float = 10.0) -> str:
        """All the server wrote to stderr: to its end once it has exited, else what came within `timeout`."""
        if self._reader is not None:
            self._reader.join(timeout)
        self._take_unread()
        return "".join(self.stderr_lines)
