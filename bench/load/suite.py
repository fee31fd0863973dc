"""The measurements of one benchmark run, each repeated, written into a `Results`.

Order of a run: accounts are registered on the chat server (so every chat
connection is a logged-in user), then the closed loops, the open loop, logins,
sessions created and resumed, and finally idle connections, each with servers
of their own so that their memory starts from a fresh process.  Runs of the
echo server and of the chat server alternate, so both meet the same machine.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.load.fleet import GeneratorProcess, run_once, run_window
from bench.load.report import Check, Results
from bench.load.stats import latency_summary, paired_ratios
from bench.load.targets import REPO, Target, TargetSpec

KB = 1024


@dataclass(frozen=True)
class Plan:
    """What one run measures; `run_load` builds the quick, full and smoke plans."""

    concurrency: tuple[int, ...] = (100, 1000)
    duration: float = 10.0
    warmup: float = 2.0
    repeats: int = 3
    procs: int = 2
    open_rate: float = 1000.0
    open_connections: int = 1000
    idle_steps: tuple[int, ...] = (1000, 10000)
    sessions: int = 1000
    session_concurrency: int = 50
    logins: int = 100
    login_concurrency: int = 16
    request_timeout: float = 15.0
    server_args: tuple[str, ...] = ()
    profile_seconds: float = 0.0
    profile_concurrency: int = 100
    replay_messages: int = 30000

    @property
    def accounts(self) -> int:
        return max(self.concurrency + (self.open_connections, self.profile_concurrency if self.profile_seconds
                                       else 0))


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def scrape_metrics(target: Target) -> dict[str, float] | None:
    """Sums and counts of the chat server's turn and commit histograms (None when /metrics is not there)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"{target.http_base}/metrics", timeout=5) as response:
            text = response.read().decode("utf-8")
    except OSError:
        return None
    wanted = {"chatbot_reply_latency_seconds", "chatbot_db_commit_seconds"}
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name in wanted:
            for sample in family.samples:
                if sample.name.endswith(("_sum", "_count")):
                    values[sample.name] = sample.value
    return values


def code_version() -> str:
    """The commit of the code under test, and whether chatbot/ differs from it."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" with uncommitted changes in chatbot/" if git("status", "--porcelain", "--", "chatbot") else "")


class Suite:
    def __init__(self, plan: Plan, work_dir: Path) -> None:
        self.plan = plan
        self.work = work_dir
        self.results = Results()
        self.nonce = secrets.token_hex(3)
        self.jobs = itertools.count(1)
        self.accounts: list[tuple[str, str]] = []
        self.tokens: list[str | None] = []

    # --- helpers ---------------------------------------------------------------------------
    def job(self, scenario: str, target: Target, **fields) -> dict:
        number = next(self.jobs)
        return {"scenario": scenario, "url": target.url, "nonce": f"{self.nonce}j{number}", "seed": number,
                "timeout": self.plan.request_timeout, **fields}

    def shares(self, total: int) -> list[tuple[int, int]]:
        """(first, count) of each generator process's part of `total` connections."""
        procs = max(1, min(self.plan.procs, total))
        bounds = [round(total * i / procs) for i in range(procs + 1)]
        return [(bounds[i], bounds[i + 1] - bounds[i]) for i in range(procs)]

    def window(self, scenario: str, kind: str, target: Target, connections: int, **fields) -> dict:
        jobs = []
        for first, count in self.shares(connections):
            tokens = self.tokens[first:first + count] if kind == "chatbot" else None
            extra = dict(fields)
            if "rate" in extra:
                extra["rate"] = extra["rate"] * count / connections
            jobs.append(self.job(scenario, target, connections=count, tokens=tokens, **extra))
        return run_window(jobs, server_pid=target.pid, warmup=self.plan.warmup, duration=self.plan.duration,
                          setup_timeout=120 + connections / 20, request_timeout=self.plan.request_timeout)

    def enough_tokens(self, count: int) -> bool:
        ready = sum(1 for token in self.tokens[:count] if token)
        if ready < count:
            self.results.notes.append(f"only {ready} of the first {count} accounts were registered; "
                                      "chat runs needing more were skipped")
            return False
        return True

    # --- the run ---------------------------------------------------------------------------
    def run(self) -> Results:
        plan = self.plan
        say(f"load benchmark: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
            f"working in {self.work}")
        self.results.notes.append(f"chatbot at {code_version()}; {os.cpu_count()} cores; "
                                  f"load average at the start: {os.getloadavg()[0]:.2f}")
        echo = Target(TargetSpec("echo"), self.work / "echo")
        chat = Target(TargetSpec("chatbot", plan.server_args), self.work / "chatbot")
        try:
            echo.start()
            chat.start()
            self.register_accounts(chat)
            for concurrency in plan.concurrency:
                if self.enough_tokens(concurrency):
                    self.closed_loop(echo, chat, concurrency)
            if plan.open_connections and self.enough_tokens(plan.open_connections):
                self.open_loop(echo, chat)
            self.logins(chat)
            if plan.profile_seconds and self.enough_tokens(plan.profile_concurrency):
                self.profile(chat)
            self.sessions(echo, chat)
        finally:
            echo.stop()
            chat.stop()
        if plan.idle_steps:
            self.idle()
        self.replay()
        self.check_targets()
        self.results.notes.append(f"load average at the end: {os.getloadavg()[0]:.2f} "
                                  f"(the machine is shared; compare runs made close together)")
        return self.results

    # --- accounts ----------------------------------------------------------------------------
    def register_accounts(self, chat: Target) -> None:
        plan = self.plan
        count = plan.accounts
        self.accounts = [(f"u{self.nonce}{i}", f"load test password {i}") for i in range(count)]
        self.tokens = [None] * count
        section = self.results.section(
            "accounts", "argon2id (m=19 MiB, t=2, p=1) on the server's blocking threads: "
                        "these rates are bound by password hashing")
        batches = [(round(count * i / plan.repeats), round(count * (i + 1) / plan.repeats))
                   for i in range(plan.repeats)]
        for run, (first, last) in enumerate(batches, 1):
            if first == last:
                continue
            cpu0 = chat.cpu_seconds()
            result = run_once(self.job("register", chat, accounts=self.accounts[first:last],
                                       concurrency=plan.login_concurrency),
                              timeout=120 + (last - first) * 2)
            cpu = chat.cpu_seconds() - cpu0
            self.tokens[first:last] = result["tokens"]
            section.add("registrations/s", "chatbot", result["rate"], digits=1)
            section.add("registration p50 ms", "chatbot", latency_summary(result["latencies_ms"])["p50"], digits=1)
            section.add("server CPU per registration ms", "chatbot",
                        cpu / result["done"] * 1000 if result["done"] else None, digits=1)
            say(f"registered {result['done']}/{last - first} accounts ({run}/{len(batches)}): "
                f"{result['rate']:.1f}/s {self._failures(result)}")

    def logins(self, chat: Target) -> None:
        plan = self.plan
        if not plan.logins or not self.accounts:
            return
        section = self.results.section("accounts")
        for run in range(plan.repeats):
            chosen = [self.accounts[(run * plan.logins + i) % len(self.accounts)] for i in range(plan.logins)]
            cpu0 = chat.cpu_seconds()
            result = run_once(self.job("login", chat, accounts=chosen, concurrency=plan.login_concurrency),
                              timeout=120 + plan.logins * 2)
            cpu = chat.cpu_seconds() - cpu0
            section.add("logins/s", "chatbot", result["rate"], digits=1)
            section.add("login p50 ms", "chatbot", latency_summary(result["latencies_ms"])["p50"], digits=1)
            section.add("server CPU per login ms", "chatbot",
                        cpu / result["done"] * 1000 if result["done"] else None, digits=1)
            say(f"logins run {run + 1}/{plan.repeats}: {result['rate']:.1f}/s {self._failures(result)}")

    # --- chatting ------------------------------------------------------------------------------
    def closed_loop(self, echo: Target, chat: Target, concurrency: int) -> None:
        plan = self.plan
        section = self.results.section(
            f"closed loop, C = {concurrency:,}",
            f"{plan.repeats} runs of {plan.duration:g} s after {plan.warmup:g} s of warm-up, "
            f"{len(self.shares(concurrency))} generator process(es); each connection sends, waits for its ack, "
            "sends again")
        for run in range(plan.repeats):
            for kind, target in (("echo", echo), ("chatbot", chat)):
                before = scrape_metrics(target) if kind == "chatbot" else None
                merged = self.window("closed", kind, target, concurrency)
                after = scrape_metrics(target) if kind == "chatbot" else None
                rate = self._record_window(section, kind, merged)
                if before and after:
                    self._record_server_side(section, before, after)
                say(f"closed loop C={concurrency} run {run + 1}/{plan.repeats} {kind}: {rate:,.0f} msg/s "
                    f"{self._failures(merged)}")

    def open_loop(self, echo: Target, chat: Target) -> None:
        plan = self.plan
        section = self.results.section(
            f"open loop, {plan.open_rate:,.0f} msg/s offered over {plan.open_connections:,} connections",
            f"Poisson arrivals, round-robin over the connections; latency counted from the scheduled send time; "
            f"{plan.repeats} runs of {plan.duration:g} s")
        for run in range(plan.repeats):
            for kind, target in (("echo", echo), ("chatbot", chat)):
                merged = self.window("open", kind, target, plan.open_connections, rate=plan.open_rate)
                section.add("offered msg/s", kind, merged.get("offered", 0) / merged["window_s"])
                rate = self._record_window(section, kind, merged, ratio=False)
                say(f"open loop run {run + 1}/{plan.repeats} {kind}: {rate:,.0f} msg/s completed "
                    f"{self._failures(merged)}")

    def _record_window(self, section, kind: str, merged: dict, *, ratio: bool = True) -> float:
        window = merged["window_s"]
        completed = merged.get("completed", 0)
        rate = completed / window
        section.add("messages/s", kind, rate, ratio=ratio)
        for name, value in latency_summary(merged["latencies_ms"]).items():
            section.add(f"{name} ms", kind, value, digits=2, ratio=ratio)
        section.add("server CPU, % of a core", kind, merged["server_cpu_s"] / window * 100)
        section.add("server CPU per message µs", kind,
                    merged["server_cpu_s"] / completed * 1e6 if completed else None, ratio=ratio)
        # Messages per CPU-second of the server: what one core would carry, less sensitive to a busy machine.
        section.add("msg/s per server core", kind,
                    completed / merged["server_cpu_s"] if merged["server_cpu_s"] else None, ratio=ratio)
        section.add("generator CPU, % of a core", kind, merged["client_cpu_s"] / window * 100)
        section.add("connections", kind, merged["connected"])
        failed = (merged.get("errors", 0) + merged.get("timeouts", 0) + merged.get("closed", 0)
                  + sum(merged["failures"].values()))
        section.add("failed requests or connections", kind, failed)
        return rate

    @staticmethod
    def _record_server_side(section, before: dict, after: dict) -> None:
        def mean_ms(name: str) -> float | None:
            count = after.get(f"{name}_count", 0) - before.get(f"{name}_count", 0)
            total = after.get(f"{name}_sum", 0) - before.get(f"{name}_sum", 0)
            return total / count * 1000 if count else None

        section.add("server: mean turn time ms (/metrics)", "chatbot",
                    mean_ms("chatbot_reply_latency_seconds"), digits=2)
        section.add("server: mean wait for commit ms (/metrics)", "chatbot",
                    mean_ms("chatbot_db_commit_seconds"), digits=2)

    # --- sessions --------------------------------------------------------------------------------
    def sessions(self, echo: Target, chat: Target) -> None:
        plan = self.plan
        if not plan.sessions:
            return
        section = self.results.section(
            "sessions", f"{plan.sessions:,} connections per run, {plan.session_concurrency} at a time; each "
                        "connects, sends hello, waits for the welcome and closes (echo: the copy of its hello)")
        created: list[list[str | None]] = []
        for run in range(plan.repeats):
            result = self._sessions_run(echo, None)
            section.add("new sessions/s", "echo", result["rate"], ratio=True)
            result = self._sessions_run(chat, None)
            section.add("new sessions/s", "chatbot", result["rate"], ratio=True)
            created.append(result["tokens"])
            resumed = self._sessions_run(chat, result["tokens"])
            section.add("resumed sessions/s (held in memory)", "chatbot", resumed["rate"])
            say(f"sessions run {run + 1}/{plan.repeats}: created {result['rate']:,.0f}/s, "
                f"resumed {resumed['rate']:,.0f}/s {self._failures(resumed)}")
        chat.restart()  # sessions now come from the database, as after a deploy
        for run, tokens in enumerate(created):
            resumed = self._sessions_run(chat, tokens)
            section.add("resumed sessions/s (from the database)", "chatbot", resumed["rate"])
            say(f"sessions run {run + 1}/{plan.repeats}: resumed from the database {resumed['rate']:,.0f}/s "
                f"{self._failures(resumed)}")

    def _sessions_run(self, target: Target, tokens: list[str | None] | None) -> dict:
        fields = {"tokens": [t for t in tokens if t]} if tokens else {"count": self.plan.sessions}
        return run_once(self.job("sessions", target, connect_concurrency=self.plan.session_concurrency, **fields),
                        timeout=120 + self.plan.sessions / 10)

    # --- idle connections ---------------------------------------------------------------------
    def idle(self) -> None:
        plan = self.plan
        steps = plan.idle_steps
        section = self.results.section(
            "idle connections", "each connection sends hello (the chat server creates a session) and stays idle; "
                                "RSS of the server process from /proc, growth over its RSS before the first "
                                "connection, divided by the connections open; a fresh server for every run")
        for run in range(plan.repeats):
            for kind in ("echo", "chatbot"):
                folder = self.work / f"idle-{kind}-{run}"
                target = Target(TargetSpec(kind, plan.server_args if kind == "chatbot" else ()), folder)
                target.start()
                try:
                    time.sleep(1.0)
                    base = target.rss_bytes()
                    generator = GeneratorProcess(self.job("idle", target, steps=list(steps), connect_concurrency=100))
                    try:
                        for n, step in enumerate(steps):
                            ready = generator.expect("ready", 120 + step / 20)
                            time.sleep(1.0)  # let the server finish writing what the greetings caused
                            connected = ready["connected"]
                            grown = target.rss_bytes() - base
                            section.add(f"RSS per connection at {step:,}, KB", kind,
                                        grown / connected / KB if connected else None, digits=1)
                            section.add(f"connected at {step:,}", kind, connected)
                            section.add(f"connect + hello at {step:,}, per s", kind,
                                        ready["opened"] / ready["seconds"] if ready["seconds"] else None)
                            say(f"idle run {run + 1}/{plan.repeats} {kind}: {connected} open, "
                                f"{grown / max(connected, 1) / KB:.1f} KB each")
                            generator.tell({"stop": n == len(steps) - 1})
                        generator.expect("result", 60)
                    finally:
                        generator.finish()
                finally:
                    target.stop()
                    shutil.rmtree(folder, ignore_errors=True)

    # --- offline replay ---------------------------------------------------------------------------
    def replay(self) -> None:
        """Offline replay of logged sessions: bench/bench_replay.py repeats its runs and prints their median."""
        script = REPO / "bench" / "bench_replay.py"
        title = "offline replay (bench/bench_replay.py)"
        if not self.plan.replay_messages:
            return
        if not script.exists():
            self.results.notes.append("offline replay: bench/bench_replay.py does not exist yet, not measured")
            return
        say(f"offline replay of {self.plan.replay_messages:,} logged messages")
        done = subprocess.run([sys.executable, "-m", "bench.bench_replay", "--messages",
                               str(self.plan.replay_messages)], cwd=REPO, capture_output=True, text=True,
                              timeout=1800, env={**os.environ, "PYTHONPATH": str(REPO)})
        if done.returncode != 0:
            self.results.blocks.append((title, f"failed (exit {done.returncode}): {done.stderr.strip()[-800:]}"))
            return
        self.results.blocks.append((title, done.stdout.strip()))

    # --- profile -------------------------------------------------------------------------------------
    def profile(self, chat: Target) -> None:
        from bench.load.profile import profile_closed_loop

        profile_closed_loop(self, chat)

    # --- targets -------------------------------------------------------------------------------------
    def check_targets(self) -> None:
        results = self.results
        for concurrency in (100, 1000):
            title = f"closed loop, C = {concurrency:,}"
            echo = results.series(title, "messages/s", "echo")
            chat = results.series(title, "messages/s", "chatbot")
            name = f"closed-loop throughput at C = {concurrency:,} ≥ 50% of the bare echo"
            if echo is None or chat is None:
                results.checks.append(Check(name, "not measured", "this run used other concurrencies"))
                continue
            ratio = paired_ratios(chat, echo).median
            per_core = paired_ratios(results.series(title, "msg/s per server core", "chatbot"),
                                     results.series(title, "msg/s per server core", "echo")).median
            results.checks.append(Check(name, "PASS" if ratio is not None and ratio >= 0.5 else "MISS",
                                        f"{chat.median:,.0f} / {echo.median:,.0f} msg/s, chatbot/echo = "
                                        f"{(ratio or 0) * 100:.1f}% (median of paired runs); per server core "
                                        f"{(per_core or 0) * 100:.1f}%"))
        plan = self.plan
        name = "p99 ≤ 10 ms at 1,000 msg/s offered over 1,000 connections"
        title = f"open loop, {plan.open_rate:,.0f} msg/s offered over {plan.open_connections:,} connections"
        p99 = results.series(title, "p99 ms", "chatbot")
        if plan.open_rate != 1000 or plan.open_connections != 1000 or p99 is None or p99.median is None:
            results.checks.append(Check(name, "not measured", "this run offered another load"))
        else:
            results.checks.append(Check(name, "PASS" if p99.median <= 10 else "MISS",
                                        f"p99 {p99.median:.2f} ms (median of {len(p99.known)} runs)"))
        name = "10,000 sessions in one process at ≤ 10 KB RSS each above a bare echo connection"
        chat = results.series("idle connections", "RSS per connection at 10,000, KB", "chatbot")
        echo = results.series("idle connections", "RSS per connection at 10,000, KB", "echo")
        connected = results.series("idle connections", "connected at 10,000", "chatbot")
        if chat is None or echo is None or chat.median is None or echo.median is None:
            results.checks.append(Check(name, "not measured", "this run held fewer idle connections"))
        else:
            extra = chat.median - echo.median
            all_open = connected is not None and connected.low == 10000
            results.checks.append(Check(name, "PASS" if extra <= 10 and all_open else "MISS",
                                        f"{chat.median:.1f} KB vs echo {echo.median:.1f} KB: {extra:+.1f} KB per "
                                        f"session; {connected.low if connected else 0:,.0f} of 10,000 connected "
                                        "in the worst run"))

    @staticmethod
    def _failures(result: dict) -> str:
        failures = result.get("failures") or {}
        return f"(failures: {failures})" if failures else ""
