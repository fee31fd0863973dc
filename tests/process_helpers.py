"""`chatbot serve` as a real subprocess, for crash, signal and multi-process tests."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
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


class TcpProxy:
    """A TCP forwarder in front of the server, for a network that goes bad without going down.

    `hang()`: new connections are accepted and then get no answer at all, as behind a captive
    portal or a dead NAT mapping; `forward()`: they reach the server again. `cut()` breaks the
    connections that are open; `freeze()` has them carry nothing more, without closing them.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.hanging = False
        self.held: list[socket.socket] = []  # the connections accepted and never answered
        self.some_held = threading.Event()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._frozen: set[socket.socket] = set()  # what they send is dropped
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def hang(self) -> None:
        self.hanging = True

    def forward(self) -> None:
        self.hanging = False

    def freeze(self) -> None:
        with self._lock:
            self._frozen.update(end for pair in self._pairs for end in pair)

    def cut(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for end in pair:
                self._shut(end)

    def close(self) -> None:
        self._listener.close()
        self.cut()
        for held in self.held:
            held.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if self.hanging:
                self.held.append(client)
                self.some_held.set()
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if source not in self._frozen:
                    sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            self._shut(end)
        source.close()  # each socket is the source of one pump

    @staticmethod
    def _shut(end: socket.socket) -> None:
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
