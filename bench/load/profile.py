"""Where the chat server's time goes under the closed loop: py-spy samples, summed by cost.

py-spy (`pip install py-spy`) samples the server's Python stacks from outside
the process, 100 times a second, while one more closed-loop run loads it.  Each
sample is put in one cost: the innermost frame of an *owner* (logging, metrics,
storage, password hashing, intent matching, transitions, the dialog engine)
anywhere in the stack, so that JSON encoding done for a log line counts as
logging; else the innermost frame of a generic part (JSON, WebSocket framing,
the event loop, session and server glue).  Samples of a thread waiting (its
innermost line a blocking queue get, selector poll, lock wait or sleep) are left out
and counted apart.

    py-spy record -o profile.svg --pid PID      # a flame graph of the same, by hand
"""

from __future__ import annotations

import linecache
import re
import shutil
import subprocess
import sysconfig
import sys
import time
from collections import Counter
from pathlib import Path

# (cost, file path fragments); owners first: the innermost owner frame of a stack decides.
OWNERS = (
    ("logging (JSON log lines, handler, rotation lock)",
     ("logging/", "pythonjsonlogger/", "concurrent_log_handler/", "portalocker/", "chatbot/logs.py")),
    ("metrics (prometheus_client)", ("prometheus_client/", "chatbot/metrics.py")),
    ("storage (peewee, sqlite3, writer thread)", ("peewee.py", "playhouse/", "sqlite3/", "chatbot/storage/")),
    ("password hashing (argon2)", ("argon2/", "_argon2_cffi_bindings", "chatbot/accounts.py")),
    ("intent matching (chatbot.text, rapidfuzz)", ("chatbot/text.py", "rapidfuzz/")),
    ("transitions library", ("transitions/",)),
    ("dialog engine (chatbot.dialogs)", ("chatbot/dialogs/",)),
)
GENERIC = (
    ("JSON encoding and parsing of frames", ("json/", "chatbot/protocol.py")),
    ("WebSocket framing and socket I/O (tornado)", ("tornado/websocket.py", "tornado/iostream.py", "socket.py")),
    ("event loop (asyncio, tornado ioloop)", ("asyncio/", "selectors.py", "tornado/ioloop.py", "tornado/platform/",
                                              "tornado/gen.py", "tornado/concurrent.py")),
    ("tornado HTTP and web", ("tornado/",)),
    ("sessions (chatbot.sessions)", ("chatbot/sessions.py",)),
    ("server handler (chatbot.server)", ("chatbot/server.py",)),
)
OTHER = "other"
# A thread whose innermost Python line is a blocking get/poll/select/wait or a sleep is waiting, not working; py-spy
# does not always see such a thread as idle.  Calls with a quoted argument (dict.get("key")) are work.
WAITING_LINE = re.compile(r"\.(get|poll|select|wait|acquire|sleep)\((block=True|timeout=\w+|[^)\"']*)\)")


def frame_file(frame: str) -> str:
    """'JSONEncoder.encode (json/encoder.py:200)' -> 'json/encoder.py'."""
    start = frame.rfind(" (")
    return frame[start + 2:frame.rfind(":")] if start >= 0 else frame


def frame_function(frame: str) -> str:
    """'JSONEncoder.encode (json/encoder.py:200)' -> 'JSONEncoder.encode (json/encoder.py)'."""
    start = frame.rfind(" (")
    return f"{frame[:start]} ({frame_file(frame)})" if start >= 0 else frame


def source_line(frame: str) -> str:
    """The source text of a sampled frame, looked up in this checkout and the interpreter's paths."""
    start = frame.rfind(" (")
    location = frame[start + 2:-1] if start >= 0 and frame.endswith(")") else ""
    path, _, number = location.rpartition(":")
    if not number.isdigit():
        return ""
    roots = [Path(__file__).resolve().parents[2], Path(sysconfig.get_paths()["stdlib"]),
             *(Path(entry) for entry in sys.path if entry)]
    for root in roots:
        candidate = root / path
        if candidate.is_file():
            return linecache.getline(str(candidate), int(number)).strip()
    return ""


def is_waiting(frames: list[str], cache: dict[str, bool]) -> bool:
    if not frames:
        return False
    leaf = frames[-1]
    if leaf not in cache:
        cache[leaf] = bool(WAITING_LINE.search(source_line(leaf)))
    return cache[leaf]


def _match(path: str, rules) -> str | None:
    for name, fragments in rules:
        if any(fragment in path for fragment in fragments):
            return name
    return None


def classify(frames: list[str]) -> str:
    """The cost of one sampled stack (outermost frame first)."""
    files = [frame_file(frame) for frame in frames]
    for path in reversed(files):
        owner = _match(path, OWNERS)
        if owner:
            return owner
    for path in reversed(files):
        generic = _match(path, GENERIC)
        if generic:
            return generic
    return OTHER


def thread_group(name: str) -> str:
    if name == "MainThread":
        return "event loop thread"
    if name.startswith("chatbot-storage-writer"):
        return "storage writer thread"
    if name.startswith("chatbot-blocking"):
        return "blocking-work threads"
    if name.startswith("chatbot-log-writer"):
        return "log writer thread"
    return "other threads"


def summarise(raw_text: str, top: int = 15) -> str:
    """A readable summary of py-spy's raw (collapsed stack) output."""
    costs: Counter = Counter()
    loop_costs: Counter = Counter()
    threads: Counter = Counter()
    leaves: Counter = Counter()
    total = idle = 0
    waiting_cache: dict[str, bool] = {}
    for line in raw_text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread_name = frames[0].split(": ", 1)[-1] if frames[0].startswith("thread ") else "MainThread"
        frames = frames[1:] if frames[0].startswith("thread ") else frames
        if is_waiting(frames, waiting_cache):
            idle += count
            continue
        group = thread_group(thread_name)
        cost = classify(frames)
        total += count
        costs[cost] += count
        threads[group] += count
        if group == "event loop thread":
            loop_costs[cost] += count
        if frames:
            leaves[frame_function(frames[-1])] += count
    if not total:
        return "no samples (was the server busy? is py-spy allowed to attach?)"
    loop_total = sum(loop_costs.values()) or 1
    lines = [f"{total:,} samples of busy threads ({idle:,} more of threads waiting in a get/poll/wait/sleep, left out); "
             "by thread: " + ", ".join(f"{name} {n / total:.0%}" for name, n in threads.most_common()), "",
             f"   {'cost':<52} {'all threads':>12} {'event loop':>11}"]
    for cost, n in costs.most_common():
        lines.append(f"   {cost:<52} {n / total:>12.1%} {loop_costs[cost] / loop_total:>11.1%}")
    lines += ["", f"   top {top} functions by own samples (innermost frame):"]
    for function, n in leaves.most_common(top):
        lines.append(f"   {n / total:>6.1%}  {function}")
    return "\n".join(lines)


def find_py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def profile_closed_loop(suite, chat) -> None:
    """One extra closed-loop run against the chat server with py-spy attached; adds the summary to the results."""
    from bench.load.fleet import run_window

    plan = suite.plan
    results = suite.results
    title = f"profile of chatbot serve, closed loop C = {plan.profile_concurrency}"
    py_spy = find_py_spy()
    if py_spy is None:
        results.blocks.append((title, "not profiled: py-spy is not installed (pip install py-spy)"))
        return
    out = suite.work / "profile.raw.txt"
    sampler: list[subprocess.Popen] = []

    def attach(_go: float) -> None:
        sampler.append(subprocess.Popen(
            [py_spy, "record", "--pid", str(chat.pid), "--rate", "100", "--format", "raw", "--threads",
             "--duration", str(max(1, round(plan.warmup + plan.duration))), "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))

    jobs = [suite.job("closed", chat, connections=count, tokens=suite.tokens[first:first + count])
            for first, count in suite.shares(plan.profile_concurrency)]
    merged = run_window(jobs, server_pid=chat.pid, warmup=plan.warmup, duration=plan.duration,
                        setup_timeout=120, request_timeout=plan.request_timeout, on_go=attach)
    stderr = ""
    if sampler:
        try:
            _, stderr = sampler[0].communicate(timeout=60)
        except subprocess.TimeoutExpired:
            sampler[0].kill()
            time.sleep(0.5)
    rate = merged.get("completed", 0) / merged["window_s"]
    if not out.exists():
        results.blocks.append((title, f"py-spy wrote nothing: {stderr.strip()[-500:]}"))
        return
    text = summarise(out.read_text(encoding="utf-8", errors="replace"))
    results.blocks.append((title, f"{rate:,.0f} msg/s while sampled; raw stacks in {out}\n{text}"))
