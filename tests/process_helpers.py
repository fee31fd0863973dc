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


class StderrLines:
    """A process's stderr, read line by line on a thread: a process that hangs without a word
    fails its test instead of hanging it. `lines` holds what was taken in so far."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self.ended = False  # the whole stream was taken in
        self._unread: queue.Queue[str | None] = queue.Queue()  # None: the end of the stream
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._unread.put(line)
        self._unread.put(None)

    def _take(self, line: str | None) -> None:
        if line is None:
            self.ended = True
        else:
            self.lines.append(line)

    def search(self, pattern: re.Pattern | str, timeout: float) -> re.Match | None:
        """The first match of `pattern` in a line still to come; None once the stream ended or
        `timeout` seconds passed without one."""
        deadline = time.monotonic() + timeout
        while not self.ended and (left := deadline - time.monotonic()) > 0:
            try:
                line = self._unread.get(timeout=left)
            except queue.Empty:
                return None
            self._take(line)
            found = line is not None and re.search(pattern, line)
            if found:
                return found
        return None

    def rest(self, timeout: float = 10.0) -> str:
        """All the lines: to the end of the stream once the process has ended, else what came
        within `timeout`."""
        self._reader.join(timeout)
        while not self._unread.empty():
            self._take(self._unread.get())
        return "".join(self.lines)


class ServerProcess:
    def __init__(self, data_dir: Path, *args: str, env: dict | None = None, open_files: int | None = None) -> None:
        """`open_files`: the server's limit on open files (soft and hard), as `ulimit -n` sets it."""
        self.data_dir = data_dir
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.open_files = open_files
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.stderr: StderrLines | None = None  # of the server last started

    def start(self, timeout: float = 20.0) -> int:
        command = [sys.executable, "-m", "chatbot", "serve", "--port", str(self.port or 0),
                   "--data-dir", str(self.data_dir), "--log-format", "none", *self.args]
        self.proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                     env=self.env, preexec_fn=self._limit if self.open_files else None)
        self.stderr = StderrLines(self.proc.stderr)
        found = self.stderr.search(LISTENING, timeout)
        if found:
            self.port = int(found.group(1))
            return self.port
        if self.stderr.ended:
            raise RuntimeError(f"server exited early ({self.proc.wait()}): {self.stderr.rest()}")
        self.kill()  # not left running, and holding its port and data folder, after the test
        raise RuntimeError(f"server did not start in {timeout}s: {self.stderr.rest(timeout=5)}")

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
        return self.stderr.rest(timeout) if self.stderr else ""


class FreezableProxy:
    """A TCP relay to `host:port` that can stop passing data on while keeping its connections open:
    a database server (or a network) that stops answering without refusing anything."""

    def __init__(self, host: str, port: int) -> None:
        import socket

        self.target = (host, port)
        self.frozen = threading.Event()
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._sockets: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self.frozen.set()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> "FreezableProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _accept(self) -> None:
        import socket

        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            server = socket.create_connection(self.target)
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a, b) -> None:
        import select

        peers = {a: b, b: a}
        while not self._closed.is_set():
            if self.frozen.is_set():
                time.sleep(0.05)  # holds both ends open and reads nothing: no answer, no error
                continue
            try:
                readable, _, _ = select.select(list(peers), [], [], 0.05)
                for sock in readable:
                    if self.frozen.is_set():
                        break
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
            except OSError:
                return
