"""The load benchmark still runs: a tiny real run against both servers, and its pure parts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.load import procstat
from bench.load.profile import classify, summarise
from bench.load.stats import Series, paired_ratios, percentile
from bench.run_load import counts, parser, plan_from

REPO = Path(__file__).resolve().parents[1]


def test_smoke_run_prints_figures_for_both_servers(tmp_path):
    out = tmp_path / "figures.json"
    done = subprocess.run([sys.executable, "-m", "bench.run_load", "--smoke", "--json", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout
    for title in ("== closed loop, C = 5", "== open loop, 20 msg/s offered over 5 connections", "== sessions",
                  "== idle connections", "== accounts", "== targets"):
        assert title in printed, printed
    sections = json.loads(out.read_text())["sections"]
    closed = sections["closed loop, C = 5"]["rows"]
    for kind in ("echo", "chatbot"):
        for row in ("messages/s", "p50 ms", "p95 ms", "p99 ms", "server CPU, % of a core"):
            assert closed[row][kind][0] is not None, (row, kind)
        assert closed["messages/s"][kind][0] > 0, f"{kind} answered nothing"
        assert closed["failed requests or connections"][kind] == [0]
        assert sections["idle connections"]["rows"]["connected at 50"][kind] == [50]
        assert sections["idle connections"]["rows"]["RSS per connection at 50, KB"][kind][0] is not None
        assert sections["sessions"]["rows"]["new sessions/s"][kind][0] > 0
    assert sections["open loop, 20 msg/s offered over 5 connections"]["rows"]["p99 ms"]["chatbot"][0] is not None
    accounts = sections["accounts"]["rows"]
    assert accounts["registrations/s"]["chatbot"][0] > 0 and accounts["logins/s"]["chatbot"][0] > 0
    assert sections["sessions"]["rows"]["resumed sessions/s (from the database)"]["chatbot"][0] > 0
    # The chat server was measured with its JSON logs on: the figures are of the product as shipped.
    assert "server: mean turn time ms (/metrics)" in closed


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert [percentile(values, q) for q in (50, 95, 99, 100)] == [50, 95, 99, 100]
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0


def test_series_median_range_and_paired_ratios():
    chat, echo = Series([100.0, 300.0, None]), Series([1000.0, 1000.0, 500.0])
    assert (chat.median, chat.low, chat.high) == (200.0, 100.0, 300.0)
    assert paired_ratios(chat, echo).values == [0.1, 0.3, None]


def test_profile_puts_json_done_for_a_log_line_under_logging():
    loop = "<module> (chatbot/__main__.py:3);BaseEventLoop.run_forever (asyncio/base_events.py:607)"
    log_json = f"{loop};SessionManager._commit (chatbot/sessions.py:280);EventLog.event (chatbot/logs.py:90);" \
               "dumps (json/__init__.py:231)"
    frame_json = f"{loop};ChatSocket.send (chatbot/server.py:150);encode (chatbot/protocol.py:100);" \
                 "dumps (json/__init__.py:231)"
    framing = f"{loop};ChatSocket.send (chatbot/server.py:150);WebSocketProtocol13._write_frame " \
              "(tornado/websocket.py:1100)"
    assert classify(log_json.split(";")).startswith("logging")
    assert classify(frame_json.split(";")).startswith("JSON")
    assert classify(framing.split(";")).startswith("WebSocket framing")
    assert classify(loop.split(";")).startswith("event loop")
    raw = f"thread (1): MainThread;{log_json} 30\nthread (1): MainThread;{frame_json} 10\n" \
          "thread (2): chatbot-storage-writer;Writer._run (chatbot/storage/writer.py:80) 10\n"
    summary = summarise(raw)
    assert "50 samples" in summary and "event loop thread 80%" in summary
    assert "logging (JSON log lines, handler, rotation lock)" in summary


def test_procstat_reads_this_process():
    assert procstat.cpu_seconds(os.getpid()) > 0
    assert procstat.rss_bytes(os.getpid()) > 1 << 20
    assert os.getpid() in procstat.process_tree(os.getppid())


def test_command_line_passes_server_arguments_through():
    args = parser().parse_args(["--quick", "--workers", "2", "--db", "postgresql://postgres@127.0.0.1:5432/test",
                                "--server-arg=--blocking-threads=8", "--concurrency", "10,20"])
    plan = plan_from(args)
    assert plan.server_args == ("--workers", "2", "--db", "postgresql://postgres@127.0.0.1:5432/test",
                                "--blocking-threads=8")
    assert plan.concurrency == (10, 20) and plan.duration == 3.0
    assert counts("0") == () and counts("1000,10000") == (1000, 10000)
    with pytest.raises(SystemExit):
        parser().parse_args(["--idle", "many"])


def test_profile_leaves_out_threads_waiting_for_work(tmp_path, monkeypatch):
    (tmp_path / "waits.py").write_text("item = jobs.get()\nvalue = cache.get('key')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    raw = ("thread (3): chatbot-blocking_0;_worker (waits.py:1) 40\n"
           "thread (1): MainThread;handle (chatbot/sessions.py:10);lookup (waits.py:2) 10\n")
    summary = summarise(raw)
    assert summary.startswith("10 samples of busy threads (40 more of threads waiting")
    assert "event loop thread 100%" in summary


def test_turn_benchmark_prints_cpu_per_turn_with_and_without_parts():
    for without in ([], ["--without", "logging", "--without", "storage"]):
        done = subprocess.run([sys.executable, "-m", "bench.bench_turn", "--sessions", "3", "--turns", "60",
                               "--repeats", "1", *without], cwd=REPO, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 0, done.stderr[-3000:]
        # "label   median[ unit] [min–max]"
        figures = {match[1]: float(match[2]) for match in re.finditer(r"^(.+?)\s{2,}([\d.]+)", done.stdout, re.M)}
        assert set(figures) == {"turns/s", "event loop thread CPU per turn", "process CPU per turn (all threads)"}
        assert all(value > 0 for value in figures.values()), done.stdout
