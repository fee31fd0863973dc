"""Generator processes seen from the orchestrator: start them, wait for them, open a window, collect.

Each generator is `python -m bench.load.generator` with a JSON job on its stdin
and JSON events on its stdout; a thread per process turns stdout lines into a
queue so that every wait has a timeout.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from typing import Callable

from bench.load import procstat
from bench.load.targets import REPO


class GeneratorError(RuntimeError):
    """A generator process exited or did not report in time."""


class GeneratorProcess:
    def __init__(self, job: dict) -> None:
        self.scenario = job["scenario"]
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.load.generator"], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONPATH": str(REPO)})
        self.events: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.tell(job)

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.events.put(json.loads(line))
        self.events.put(None)

    def tell(self, message: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def expect(self, event: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise GeneratorError(f"generator ({self.scenario}): no '{event}' within {timeout:g} s") from None
            if message is None:
                raise GeneratorError(f"generator ({self.scenario}): exited with {self.proc.wait()} "
                                     f"before '{event}'")
            if message.get("event") == event:
                return message

    def cpu_seconds(self) -> float:
        return procstat.cpu_seconds(self.proc.pid)

    def finish(self, timeout: float = 30.0) -> None:
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_once(job: dict, timeout: float) -> dict:
    """Run a generator whose scenario needs no window (sessions, register, login); return its result."""
    generator = GeneratorProcess(job)
    try:
        return generator.expect("result", timeout)
    finally:
        generator.finish()


def sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def run_window(jobs: list[dict], *, server_pid: int, warmup: float, duration: float, setup_timeout: float,
               request_timeout: float, on_go: Callable[[float], None] | None = None) -> dict:
    """Start one generator per job, wait until all are connected, then load the server for
    `warmup` + `duration` seconds; return their merged results with the CPU used in the measured part.
    `on_go` is called with the start time once the load is about to begin (to attach a profiler)."""
    generators = [GeneratorProcess(job) for job in jobs]
    try:
        ready = [g.expect("ready", setup_timeout) for g in generators]
        go = time.monotonic() + 0.2
        window = {"go": go, "from": go + warmup, "until": go + warmup + duration}
        for generator in generators:
            generator.tell(window)
        if on_go is not None:
            on_go(go)
        sleep_until(window["from"])
        server_cpu0 = procstat.cpu_seconds(server_pid)
        client_cpu0 = sum(g.cpu_seconds() for g in generators)
        sleep_until(window["until"])
        server_cpu = procstat.cpu_seconds(server_pid) - server_cpu0
        client_cpu = sum(g.cpu_seconds() for g in generators) - client_cpu0
        results = [g.expect("result", request_timeout + 30) for g in generators]
    finally:
        for generator in generators:
            generator.finish()
    merged = {"connected": sum(r["connected"] for r in ready), "setup_s": max(r["setup_s"] for r in ready),
              "window_s": duration, "server_cpu_s": server_cpu, "client_cpu_s": client_cpu,
              "latencies_ms": [], "failures": {}}
    for result in results:
        for key, count in result.get("failures", {}).items():
            merged["failures"][key] = merged["failures"].get(key, 0) + count
    for result in results:
        merged["latencies_ms"].extend(result["latencies_ms"])
        for key in ("completed", "errors", "timeouts", "closed", "offered"):
            if key in result:
                merged[key] = merged.get(key, 0) + result[key]
    return merged
