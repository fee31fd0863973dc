"""One load generator process: runs one scenario against a server and reports as JSON lines.

    python -m bench.load.generator      (the job is the first line of stdin)

The orchestrator (`fleet`) writes a job, waits for `{"event": "ready"}`, then
writes the measurement window as monotonic times (CLOCK_MONOTONIC is shared by
all processes of the machine), and reads `{"event": "result"}`.

Scenarios:
  closed    C connections, each sends, waits for the completing frame, sends the next
  open      Poisson arrivals at a fixed total rate, round-robin over the connections;
            latency is counted from the scheduled send time, so a late sender shows
  idle      connections that send `hello` and stay idle, opened in steps
  sessions  connect + hello + close: new sessions, or resumed ones when tokens are given
  register  create accounts through the registration dialog (argon2 hashing on the server)
  login     log in to existing accounts through the login dialog (argon2 verification)
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

from bench.load.connection import BenchConnection, ConnectionClosed, RequestTimeout

# What a logged-in user sends: typed texts of the chat flow (one falls back) and its quick replies.
TEXTS = ("hi", "who am i", "tell me a joke", "what time is it", "call me {name}", "what is my name",
         "how are you", "what can you do", "thanks", "can you sing")
TEXT_WEIGHTS = (3, 2, 2, 2, 1, 2, 1, 1, 1, 1)
BUTTONS = ("capabilities", "whoami", "joke")
BUTTON_SHARE = 0.25
NAMES = ("Ann", "Bo", "Cleo", "Dee", "Eli", "Fay", "Gus", "Hal")


class Mix:
    """Chooses the next frame a chatting user sends."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        weights = [w * (1 - BUTTON_SHARE) / sum(TEXT_WEIGHTS) for w in TEXT_WEIGHTS]
        weights += [BUTTON_SHARE / len(BUTTONS)] * len(BUTTONS)
        self.choices = [("message", text) for text in TEXTS] + [("action", name) for name in BUTTONS]
        self.cum_weights = [sum(weights[: i + 1]) for i in range(len(weights))]

    def frame(self, conn: BenchConnection) -> dict:
        kind, value = self.rng.choices(self.choices, cum_weights=self.cum_weights)[0]
        if kind == "action":
            return {"type": "action", "id": conn.next_id(), "name": value}
        if "{name}" in value:
            value = value.format(name=self.rng.choice(NAMES))
        return {"type": "message", "id": conn.next_id(), "text": value}


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def read_command() -> dict:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return json.loads(line) if line.strip() else {"stop": True}


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class Generator:
    def __init__(self, job: dict) -> None:
        self.job = job
        self.url = job["url"]
        self.timeout = float(job.get("timeout", 15.0))
        self.nonce = job["nonce"]
        self.gate = asyncio.Semaphore(int(job.get("connect_concurrency", 100)))
        self.failures: dict[str, int] = {}

    def fail(self, what: str) -> None:
        self.failures[what] = self.failures.get(what, 0) + 1

    async def connect(self, index: int, token: str | None = None) -> BenchConnection | None:
        """Open connection `index` and greet the server (resuming `token` if given); None on failure."""
        async with self.gate:
            try:
                conn = await BenchConnection.open(self.url, f"{self.nonce}-{index}-", timeout=self.timeout)
            except Exception as err:  # refused, reset, timed out: counted, the run goes on
                self.fail(f"connect: {type(err).__name__}")
                return None
            try:
                await conn.hello(self.timeout, lang="en", **({"resume": token} if token else {}))
            except Exception as err:
                self.fail(f"hello: {type(err).__name__}")
                conn.close()
                return None
        if token and conn.resumed is not True:
            self.fail("hello: session not resumed")
        return conn

    async def connect_all(self, first: int, count: int, tokens: list | None = None) -> list[BenchConnection]:
        made = await asyncio.gather(*(self.connect(first + i, tokens[i] if tokens else None)
                                      for i in range(count)))
        return [conn for conn in made if conn is not None]

    # --- windowed scenarios ----------------------------------------------------------------
    async def _windowed(self, run) -> None:
        started = time.monotonic()
        conns = await self.connect_all(0, int(self.job["connections"]), self.job.get("tokens"))
        emit("ready", connected=len(conns), setup_s=round(time.monotonic() - started, 3), failures=self.failures)
        window = await read_command()
        if window.get("stop"):
            return
        stats = {"completed": 0, "errors": 0, "timeouts": 0, "closed": 0, "latencies_ms": []}
        watchdog = asyncio.create_task(self._watchdog(conns, stats))
        try:
            await run(conns, window, stats)
        finally:
            watchdog.cancel()
            for conn in conns:
                conn.close()
        stats["completed"] = len(stats["latencies_ms"])
        emit("result", window_s=window["until"] - window["from"], failures=self.failures, **stats)

    async def _watchdog(self, conns: list[BenchConnection], stats: dict) -> None:
        while True:
            await asyncio.sleep(0.5)
            cutoff = time.monotonic() - self.timeout
            for conn in conns:
                stats["timeouts"] += conn.expire(cutoff)

    async def closed(self, conns: list[BenchConnection], window: dict, stats: dict) -> None:
        start, until = window["from"], window["until"]
        latencies = stats["latencies_ms"]
        seed = int(self.job.get("seed", 0))
        clock = time.monotonic

        async def user(conn: BenchConnection, mix: Mix) -> None:
            while True:
                sent = clock()
                if sent >= until:
                    return
                try:
                    frame = await conn.send(mix.frame(conn), sent)
                except RequestTimeout:
                    continue
                except ConnectionClosed:
                    stats["closed"] += 1
                    return
                done = clock()
                if start <= done < until:
                    if frame.get("type") == "error":
                        stats["errors"] += 1
                    else:
                        latencies.append(ms(done - sent))

        await asyncio.sleep(max(0.0, window["go"] - clock()))
        await asyncio.gather(*(user(conn, Mix(seed * 100_003 + n)) for n, conn in enumerate(conns)))

    async def open(self, conns: list[BenchConnection], window: dict, stats: dict) -> None:
        start, until = window["from"], window["until"]
        rate = float(self.job["rate"])
        rng = random.Random(int(self.job.get("seed", 0)))
        mix = Mix(int(self.job.get("seed", 0)) + 1)
        latencies = stats["latencies_ms"]
        clock = time.monotonic
        outstanding = 0
        offered = 0
        finished = asyncio.Event()

        def record(scheduled: float, future: asyncio.Future) -> None:
            nonlocal outstanding
            outstanding -= 1
            if outstanding == 0:
                finished.set()
            error = future.exception()
            if error is not None:  # timeouts are counted by the watchdog
                if isinstance(error, ConnectionClosed):
                    stats["closed"] += 1
                return
            if start <= scheduled < until:
                if future.result().get("type") == "error":
                    stats["errors"] += 1
                else:
                    latencies.append(ms(clock() - scheduled))

        live = list(conns)
        scheduled = window["go"]
        index = 0
        while live:
            scheduled += rng.expovariate(rate)
            if scheduled >= until:
                break
            delay = scheduled - clock()
            await asyncio.sleep(delay if delay > 0 else 0)
            conn = live[index % len(live)]
            index += 1
            if conn.closed:
                live.remove(conn)
                continue
            if start <= scheduled < until:
                offered += 1
            outstanding += 1
            finished.clear()
            conn.send(mix.frame(conn), scheduled).add_done_callback(lambda f, s=scheduled: record(s, f))
        if outstanding:
            try:
                await asyncio.wait_for(finished.wait(), self.timeout + 1)
            except asyncio.TimeoutError:
                pass
        stats["offered"] = offered

    # --- other scenarios -------------------------------------------------------------------
    async def idle(self) -> None:
        conns: list[BenchConnection] = []
        for step in self.job["steps"]:
            started = time.monotonic()
            opened = await self.connect_all(len(conns), int(step) - len(conns))
            conns.extend(opened)
            elapsed = time.monotonic() - started
            emit("ready", connected=len(conns), opened=len(opened), seconds=round(elapsed, 3),
                 failures=dict(self.failures))
            if (await read_command()).get("stop"):
                break
        for conn in conns:
            conn.close()
        await asyncio.sleep(0.2)
        emit("result", connected=len(conns), failures=self.failures)

    async def sessions(self) -> None:
        """Connect, hello, close: `count` new sessions, or the sessions of `tokens`."""
        tokens = self.job.get("tokens")
        count = len(tokens) if tokens else int(self.job["count"])
        latencies: list[float] = []
        out: list[str | None] = [None] * count

        async def visit(i: int) -> None:
            began = time.monotonic()
            conn = await self.connect(i, tokens[i] if tokens else None)
            if conn is None:
                return
            if not tokens or conn.resumed:
                latencies.append(ms(time.monotonic() - began))
                out[i] = conn.token
            conn.close()

        started = time.monotonic()
        await asyncio.gather(*(visit(i) for i in range(count)))
        elapsed = time.monotonic() - started
        emit("result", done=len(latencies), seconds=round(elapsed, 3), rate=len(latencies) / elapsed,
             latencies_ms=latencies, tokens=out, failures=self.failures)

    async def accounts(self, action: str) -> None:
        """Register (`action` "register") or log in to each of `accounts` ([username, password] pairs)."""
        accounts = self.job["accounts"]
        busy = asyncio.Semaphore(int(self.job.get("concurrency", len(accounts) or 1)))
        latencies: list[float] = []
        tokens: list[str | None] = [None] * len(accounts)

        async def one(i: int, username: str, password: str) -> None:
            async with busy:
                await attempt(i, username, password)

        async def attempt(i: int, username: str, password: str) -> None:
            conn = await self.connect(i)
            if conn is None:
                return
            began = time.monotonic()
            try:
                step = conn.register if action == "register" else conn.login
                if await step(username, password, self.timeout):
                    latencies.append(ms(time.monotonic() - began))
                    tokens[i] = conn.token
                else:
                    self.fail(f"{action}: not logged in")
            except (asyncio.TimeoutError, RequestTimeout, ConnectionClosed) as err:
                self.fail(f"{action}: {type(err).__name__}")
            finally:
                conn.close()

        started = time.monotonic()
        await asyncio.gather(*(one(i, u, p) for i, (u, p) in enumerate(accounts)))
        elapsed = time.monotonic() - started
        emit("result", done=len(latencies), seconds=round(elapsed, 3), rate=len(latencies) / elapsed,
             latencies_ms=latencies, tokens=tokens, failures=self.failures)

    async def run(self) -> None:
        scenario = self.job["scenario"]
        if scenario == "closed":
            await self._windowed(self.closed)
        elif scenario == "open":
            await self._windowed(self.open)
        elif scenario == "idle":
            await self.idle()
        elif scenario == "sessions":
            await self.sessions()
        elif scenario in ("register", "login"):
            await self.accounts(scenario)
        else:
            raise SystemExit(f"generator: unknown scenario {scenario!r}")


async def _main() -> None:
    job = json.loads(sys.stdin.readline())
    await Generator(job).run()


def main() -> None:
    from chatbot.accept import raise_open_files_limit

    raise_open_files_limit()
    asyncio.run(_main())


if __name__ == "__main__":
    main()
