"""JSON-lines logging: record shape, console output, redaction, rotation, reading back."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatbot import logs
from chatbot.errors import ConfigError
from chatbot.logs import EventLog, LogLine, read_log_records, record_fields, setup_logging

REPO = Path(__file__).resolve().parents[1]
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "logs"


@pytest.fixture
def setup(log_dir: Path, request, monkeypatch):
    """setup_logging with console off by default; every handle is closed after the test.

    A test that takes `either_path` runs twice: once with setup_logging's handler alone on the
    root, where EventLog makes each line itself, and once with pytest's capturing handlers
    there too, where it makes a LogRecord for them all.
    """
    handles = []

    def make(**options):
        if "either_path" in request.fixturenames and request.getfixturevalue("either_path") == "direct":
            # pytest adds its handlers at the start of the test's call: set them aside here.
            monkeypatch.setattr(logging.getLogger(), "handlers", [])
        options.setdefault("console", "none")
        handle = setup_logging(log_dir=log_dir, **options)
        handles.append(handle)
        return handle

    yield make
    for handle in handles:
        handle.close()


@pytest.fixture(params=["direct", "through a LogRecord"])
def either_path(request) -> str:
    return request.param


@pytest.fixture
def log() -> EventLog:
    return EventLog(logging.getLogger("chatbot.test"))


def flush() -> None:
    """Records are written by a thread of their own: wait until it wrote what is queued."""
    for handler in logging.getLogger().handlers:
        handler.flush()


def records(log_dir: Path) -> list[dict]:
    flush()
    lines = list(read_log_records([log_dir / "chatbot.log"]))
    assert [line.error for line in lines if line.error] == []
    return [line.record for line in lines]


# ----------------------------------------------------------------------------- record shape


def test_record_starts_with_ts_level_event_pid_then_fields(either_path, setup, log, log_dir):
    setup()
    before = dt.datetime.now(dt.timezone.utc)
    log.event("message.in", session="ab12", conn="c1", id=3, text="hi")
    after = dt.datetime.now(dt.timezone.utc)

    [record] = records(log_dir)
    assert list(record) == ["ts", "level", "event", "pid", "session", "conn", "id", "text"]
    assert record["level"] == "info"
    assert record["event"] == "message.in"
    assert record["pid"] == os.getpid()
    fields = (record["session"], record["conn"], record["id"], record["text"])
    assert fields == ("ab12", "c1", 3, "hi")
    assert TS.fullmatch(record["ts"])
    stamp = dt.datetime.strptime(record["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
    stamp = stamp.replace(tzinfo=dt.timezone.utc)
    assert before - dt.timedelta(milliseconds=1) <= stamp <= after


def test_warning_and_error_levels_and_exception_text(setup, log, log_dir):
    setup()
    log.warning("ratelimit.hit", conn="c1", ip="10.0.0.1", kind="message")
    try:
        raise ValueError("boom")
    except ValueError:
        log.error("error.unhandled", exc_info=True, session="s1")

    warning, error = records(log_dir)
    assert warning["level"] == "warning"
    assert error["level"] == "error"
    assert error["exc"].startswith("Traceback (most recent call last):")
    assert error["exc"].endswith("ValueError: boom")
    assert list(error)[-1] == "exc"
    for record in (warning, error):
        assert not {"message", "msg", "asctime", "exc_info", "levelname", "name"} & set(record)


def test_none_fields_are_left_out_and_reserved_names_are_fields(either_path, setup, log, log_dir):
    setup()
    log.event("action.in", session="s1", conn=None, id=1, name="yes", args=[1])
    [record] = records(log_dir)
    assert "conn" not in record
    assert record["name"] == "yes"
    assert record["args"] == [1]


def test_plain_logger_extra_fields_and_foreign_logger_name(setup, log_dir):
    setup()
    logging.getLogger("chatbot.storage").info("db.slow", extra={"ms": 12.5})
    logging.getLogger("tornado.access").info("200 GET /ws (%s) %.2fms", "127.0.0.1", 1.5)
    project, foreign = records(log_dir)
    assert project["event"] == "db.slow" and project["ms"] == 12.5
    assert "logger" not in project
    assert foreign["event"] == "200 GET /ws (127.0.0.1) 1.50ms"
    assert foreign["logger"] == "tornado.access"


def test_field_named_like_a_leading_key_keeps_its_value(either_path, setup, log, log_dir):
    setup()
    log.event("effect", session="s1", level=3, ts="now")
    [record] = records(log_dir)
    assert record["level"] == "info" and record["level_"] == 3
    assert TS.fullmatch(record["ts"]) and record["ts_"] == "now"


def test_values_json_cannot_encode_are_written_as_text(setup, log, log_dir):
    setup()
    log.event("server.start", flows={"order": "ab12"}, db=Path("/srv/db.sqlite"), text="naïve ☕")
    [record] = records(log_dir)
    assert record["flows"] == {"order": "ab12"}
    assert record["db"] == "/srv/db.sqlite"
    assert record["text"] == "naïve ☕"
    assert "naïve ☕" in (log_dir / "chatbot.log").read_text(encoding="utf-8")


def test_values_json_has_no_form_for_are_written_as_orjson_writes_them(either_path, setup, log, log_dir, capsys):
    setup()
    log.event("effect", session="s1", counts={(1, 2): 3, 4: 5})  # dict keys JSON cannot have
    log.event("effect", session="s2", score=float("nan"), big=2 ** 70)  # NaN beside what orjson refuses
    first, second = records(log_dir)
    assert first["counts"] == {"(1, 2)": 3, "4": 5}
    assert second["score"] is None and second["big"] == 2 ** 70
    assert "--- Logging error ---" not in capsys.readouterr().err


def test_a_value_whose_repr_fails_still_gets_its_console_line(setup, log, capsys):
    class Opaque:
        def __repr__(self):
            raise RuntimeError("no repr")

    setup(console="text")
    log.event("effect", session="s1", thing=Opaque())
    err = (flush(), capsys.readouterr())[1].err
    assert "effect session=s1 thing=<Opaque>" in err and "--- Logging error ---" not in err


def test_a_batch_that_cannot_be_written_is_reported_in_one_line(either_path, setup, log, log_dir, capsys,
                                                                monkeypatch):
    from chatbot.logwriter import BatchFileHandler

    def disk_full(self, text):
        raise OSError(28, "No space left on device")

    setup()
    monkeypatch.setattr(BatchFileHandler, "do_write", disk_full)
    log.event("message.in", session="s1")
    err = (flush(), capsys.readouterr())[1].err
    assert err == (f"warning: logging: cannot write {log_dir / 'chatbot.log'} (No space left on device); "
                   "its lines are lost until it can\n")


def test_level_setting_filters_and_process_name_is_written(either_path, setup, log, log_dir):
    setup(level="warning", process_name="web-2")
    log.event("message.in", session="s1")
    logging.getLogger("chatbot.test").debug("noise")
    log.warning("protocol.error", code="bad_frame")
    [record] = records(log_dir)
    assert record["event"] == "protocol.error"
    assert list(record)[:5] == ["ts", "level", "event", "pid", "process"]
    assert record["process"] == "web-2"


def test_captured_records_carry_the_event_and_its_fields(log, caplog):
    caplog.set_level(logging.INFO, logger="chatbot.test")
    log.event("slot.set", session="s1", slot="size", value="large", state=None)
    [record] = caplog.records
    assert record.getMessage() == "slot.set"
    assert record.name == "chatbot.test" and record.levelno == logging.INFO
    assert record_fields(record) == {"session": "s1", "slot": "size", "value": "large"}


@pytest.mark.parametrize("process_name", [None, "w1"])
def test_an_event_is_written_alike_with_and_without_another_handler(setup, log_dir, process_name,
                                                                   monkeypatch):
    """With only setup_logging's handler, EventLog makes the line itself, without a LogRecord;
    with another handler on the way (here a second one on the root) it makes a LogRecord."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # pytest's own capturing handlers
    setup(process_name=process_name)
    events = EventLog(logging.getLogger("tornado.general"))  # a foreign logger gets `logger`
    assert logs._sole_hand_over(events.logger, logging.INFO) is not None
    fields = {"session": "s1", "level": 2, "token": "hunter2", "empty": None, "text": "naïve ☕",
              "db": Path("/srv/db.sqlite"), "n": 10**30}
    events.event("effect", **dict(fields))
    extra = logging.NullHandler()
    root.addHandler(extra)
    assert logs._sole_hand_over(events.logger, logging.INFO) is None
    try:
        events.event("effect", **dict(fields))
    finally:
        logging.getLogger().removeHandler(extra)
    direct, through_record = records(log_dir)
    assert direct.pop("ts") and through_record.pop("ts")
    assert direct == through_record
    assert list(direct) == list(through_record)
    assert direct["token"] == "[redacted]" and direct["level_"] == 2 and direct["logger"] == "tornado.general"
    assert direct.get("process") == process_name and direct["n"] == 10**30


# ----------------------------------------------------------------------------- redaction


def test_secret_fields_are_redacted_in_file_and_console(either_path, setup, log, log_dir, capsys):
    setup(console="text")
    log.event(
        "message.in", session="s1", password="hunter2", token="t0k", resume="r3s", secret=True
    )
    logging.getLogger("chatbot.test").info("account.login", extra={"secret": "xyz"})

    first, second = records(log_dir)
    assert (first["password"], first["token"], first["resume"]) == ("[redacted]",) * 3
    assert first["secret"] is True  # a flag, not a secret
    assert second["secret"] == "[redacted]"
    file_text = (log_dir / "chatbot.log").read_text()
    console_text = (flush(), capsys.readouterr())[1].err
    for secret in ("hunter2", "t0k", "r3s", "xyz"):
        assert secret not in file_text
        assert secret not in console_text
    assert "password='[redacted]'" in console_text


# ----------------------------------------------------------------------------- console


def test_console_text_is_one_short_line_in_utc(either_path, setup, log, log_dir, capsys):
    setup(console="text")
    log.event("message.in", session="ab12", user="ann", text="hi")
    log.warning("conn.close", conn="c1", reason="going away")
    logging.getLogger("tornado.general").info("listening")

    lines = (flush(), capsys.readouterr())[1].err.splitlines()
    expected = r"\d\d:\d\d:\d\d INFO  message\.in session=ab12 user=ann text='hi'"
    assert re.fullmatch(expected, lines[0])
    assert lines[1].endswith(" WARNING conn.close conn=c1 reason='going away'")
    assert lines[2].endswith(" INFO  listening logger=tornado.general")
    assert len(lines) == 3
    assert lines[0][:8] == records(log_dir)[0]["ts"][11:19]


def test_console_text_shortens_long_values_and_shows_tracebacks(setup, log, capsys):
    setup(console="text")
    try:
        raise KeyError("lost")
    except KeyError:
        log.error("error.unhandled", exc_info=True, text="x" * 500)
    out = (flush(), capsys.readouterr())[1].err
    first, *rest = out.splitlines()
    assert len(first) < 120 and first.endswith("…")
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "KeyError: 'lost'"


def test_console_json_repeats_the_file_line(either_path, setup, log, log_dir, capsys):
    setup(console="json")
    log.event("session.created", session="s1", conn="c1", lang="en")
    [line] = (flush(), capsys.readouterr())[1].err.splitlines()
    assert json.loads(line) == records(log_dir)[0]


def test_console_none_prints_nothing(setup, log, capsys):
    setup(console="none")
    log.event("session.created", session="s1")
    assert (flush(), capsys.readouterr())[1].err == ""


# ----------------------------------------------------------------------------- setup and close


def test_close_removes_handlers_and_restores_level(setup, log, log_dir):
    root = logging.getLogger()
    handlers_before, level_before = list(root.handlers), root.level
    handle = setup(level="debug", console="text")
    assert len(root.handlers) == len(handlers_before) + 1, "one handler hands records to the writing thread"
    handle.close()
    handle.close()  # twice is harmless
    assert root.handlers == handlers_before and root.level == level_before

    log.event("after.close")
    with setup() as second:
        log.event("second.setup")
    assert second.path == log_dir / "chatbot.log"
    assert [record["event"] for record in records(log_dir)] == ["second.setup"]


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"level": "LOUD"},
            "logging: unknown level 'LOUD' (expected one of debug, info, warning, error, critical)",
        ),
        ({"console": "html"}, "logging: unknown console mode 'html' (expected text, json or none)"),
        ({"backup_count": 0}, "logging: backup_count must be 1 or more, got 0"),
        ({"max_bytes": -1}, "logging: max_bytes must be 0 or more, got -1"),
    ],
)
def test_bad_settings_raise_config_error(tmp_path, options, message):
    with pytest.raises(ConfigError) as caught:
        setup_logging(log_dir=tmp_path, **options)
    assert str(caught.value) == message


def test_unwritable_log_dir_raises_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    expected = r"^logging: cannot write .*file/logs/chatbot\.log: a part of .*file/logs is a file, not a folder$"
    with pytest.raises(ConfigError, match=expected):
        setup_logging(log_dir=blocker / "logs", console="none")
    with pytest.raises(ConfigError) as raised:  # the folder itself a file: "File exists" would puzzle
        setup_logging(log_dir=blocker, console="none")
    assert str(raised.value) == f"logging: cannot write {blocker / 'chatbot.log'}: {blocker} is a file, not a folder"


# ----------------------------------------------------------------------------- rotation


def write_numbered(log: EventLog, count: int) -> None:
    for seq in range(count):
        log.event("test.record", seq=seq, pad="p" * 100)


def test_records_logged_apart_are_written_in_batches(setup, log, log_dir, monkeypatch):
    # A server logs a few records per message, a fraction of a millisecond apart: the writer
    # gathers them for a few milliseconds instead of taking the file lock for each.
    from chatbot.logwriter import BatchFileHandler, WriterThread

    batches = []
    write_batch = BatchFileHandler.emit_batch
    monkeypatch.setattr(BatchFileHandler, "emit_batch",
                        lambda handler, batch: (batches.append(len(batch)), write_batch(handler, batch)))
    setup()
    started = time.monotonic()
    for seq in range(60):
        log.event("numbered", seq=seq)
        time.sleep(0.0005)
    logging_took = time.monotonic() - started
    assert [record["seq"] for record in records(log_dir)] == list(range(60))
    assert sum(batches) == 60 and len(batches) < 60, batches
    # Each batch's first record was queued at least GATHER after the previous batch's first,
    # so however slowly the records were logged, a writer that gathers makes no more batches
    # than this; one that wrote each record as it came would make a batch per record.
    most_batches = logging_took / WriterThread.GATHER + 1
    assert len(batches) <= most_batches, (batches, logging_took)


def test_rotation_keeps_every_record_in_order(setup, log, log_dir):
    setup(max_bytes=4096, backup_count=100)
    write_numbered(log, 500)
    flush()

    names = sorted(path.name for path in log_dir.iterdir() if not path.name.startswith("."))
    assert "chatbot.log.1" in names and "chatbot.log.10" in names
    assert not any(name.endswith(".gz") for name in names)
    for path in log_dir.glob("chatbot.log.*"):
        assert 4096 <= path.stat().st_size < 4096 + 300
    assert [record["seq"] for record in records(log_dir)] == list(range(500))


def test_rotation_drops_files_beyond_backup_count(setup, log, log_dir):
    setup(max_bytes=4096, backup_count=3)
    write_numbered(log, 500)
    flush()
    names = sorted(path.name for path in log_dir.iterdir() if not path.name.startswith("."))
    assert names == ["chatbot.log", "chatbot.log.1", "chatbot.log.2", "chatbot.log.3"]
    seqs = [record["seq"] for record in records(log_dir)]
    assert seqs == list(range(seqs[0], 500)) and seqs[0] > 0


def test_compressed_backups_are_read_back_in_order(setup, log, log_dir):
    setup(max_bytes=4096, backup_count=100, compress_backups=True)
    write_numbered(log, 500)
    flush()
    gz_names = {path.name for path in log_dir.glob("chatbot.log.*")}
    assert "chatbot.log.1.gz" in gz_names and "chatbot.log.10.gz" in gz_names
    assert all(name.endswith(".gz") for name in gz_names)
    assert [record["seq"] for record in records(log_dir)] == list(range(500))


WORKER = r"""
import logging, sys, time
from pathlib import Path
from chatbot.logs import EventLog, setup_logging

log_dir = Path(sys.argv[1])
worker, count, max_bytes = (int(arg) for arg in sys.argv[2:5])
handle = setup_logging(log_dir=log_dir, max_bytes=max_bytes, backup_count=1000, console="none")
log = EventLog(logging.getLogger("chatbot.worker"))
print("ready", flush=True)
sys.stdin.readline()
for seq in range(count):
    log.event("test.record", worker=worker, seq=seq, pad="w" * 100)
    if seq % 50 == 49:  # let the writer thread take a batch, so batches of all processes interleave
        time.sleep(0.002)
handle.close()
"""


def test_processes_sharing_one_file_lose_and_tear_no_line(log_dir):
    workers, count, max_bytes = 4, 3000, 64 * 1024
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(log_dir), str(worker), str(count), str(max_bytes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO,
        )
        for worker in range(workers)
    ]
    try:
        for proc in procs:  # start writing together, for as much contention as possible
            assert proc.stdout.readline() == "ready\n"
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            proc.stdin.close()
            assert proc.wait(timeout=300) == 0
    finally:
        for proc in procs:
            proc.kill()
            proc.stdout.close()

    rotated = list(log_dir.glob("chatbot.log.*"))
    assert len(rotated) >= 20, "the file should have rolled over many times"
    for path in rotated:
        assert max_bytes <= path.stat().st_size < max_bytes + 1024
    lines = list(read_log_records([log_dir / "chatbot.log"]))
    assert [line.error for line in lines if line.error] == []
    written = [line.record["worker"] for line in lines]
    switches = sum(1 for before, after in zip(written, written[1:]) if before != after)
    # Records go to the file in batches, so writers take turns per batch, not per record.
    assert switches >= 10, "the processes should have written at the same time"
    seen: dict[int, list[int]] = {worker: [] for worker in range(workers)}
    for line in lines:
        record = line.record
        assert record["event"] == "test.record" and record["pad"] == "w" * 100
        seen[record["worker"]].append(record["seq"])
    for worker in range(workers):
        # every record exactly once, and in the order it was written
        assert seen[worker] == list(range(count)), f"worker {worker}"


# ----------------------------------------------------------------------------- reading


def write_lines(path: Path, *records: dict) -> None:
    text = "".join(json.dumps(record) + "\n" for record in records)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as stream:
            stream.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def test_reader_walks_rotated_siblings_oldest_first(tmp_path):
    base = tmp_path / "chatbot.log"
    write_lines(tmp_path / "chatbot.log.3.gz", {"n": 1}, {"n": 2})
    write_lines(tmp_path / "chatbot.log.2", {"n": 3})
    write_lines(tmp_path / "chatbot.log.1.gz", {"n": 4})
    write_lines(base, {"n": 5}, {"n": 6})
    write_lines(tmp_path / "chatbot.log.lock", {"n": "no"})
    write_lines(tmp_path / "other.log.1", {"n": "no"})

    lines = list(read_log_records([base]))
    assert [line.record["n"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert [(Path(line.path).name, line.line_no) for line in lines] == [
        ("chatbot.log.3.gz", 1), ("chatbot.log.3.gz", 2), ("chatbot.log.2", 1),
        ("chatbot.log.1.gz", 1), ("chatbot.log", 1), ("chatbot.log", 2),
    ]
    # a rotated file named on its own is read alone
    assert [line.record["n"] for line in read_log_records([tmp_path / "chatbot.log.2"])] == [3]


def test_reader_reads_each_file_once(tmp_path):
    base = tmp_path / "chatbot.log"
    write_lines(tmp_path / "chatbot.log.1", {"n": 1})
    write_lines(base, {"n": 2})
    given = [tmp_path / "chatbot.log.1", base, str(base), tmp_path / "." / "chatbot.log"]
    assert [line.record["n"] for line in read_log_records(given)] == [1, 2]


def test_reader_reads_the_files_of_one_log_oldest_first_however_they_are_named(tmp_path):
    # A turn may straddle a rotation: its records stay together only when read oldest first.
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    write_lines(first / "chatbot.log.10.gz", {"n": 1})
    write_lines(first / "chatbot.log.2", {"n": 2})
    write_lines(first / "chatbot.log.1.gz", {"n": 3})
    write_lines(first / "chatbot.log", {"n": 4})
    write_lines(second / "chatbot.log.1", {"n": 5})
    write_lines(second / "chatbot.log", {"n": 6})

    def numbers(*given) -> list[int]:
        return [line.record["n"] for line in read_log_records(given)]

    shell_order = sorted(first.glob("chatbot.log.*"))  # .1.gz, .10.gz, .2
    assert numbers(*shell_order) == [1, 2, 3], "rotated files only: no sibling comes along"
    assert numbers(*shell_order, first / "chatbot.log") == [1, 2, 3, 4]
    assert numbers(first / "chatbot.log.2", tmp_path / "second" / ".." / "first" / "chatbot.log.1.gz",
                   first / "chatbot.log", first / "chatbot.log.2") == [1, 2, 3, 4]
    # Two logs are read one after the other, in the order each is first named.
    assert numbers(second / "chatbot.log", first / "chatbot.log.1.gz", second / "chatbot.log.1",
                   first / "chatbot.log.10.gz") == [5, 6, 1, 3]


def test_reader_reports_bad_lines_with_file_and_line(tmp_path):
    path = tmp_path / "chatbot.log"
    path.write_bytes(
        b'{"n": 1}\n'
        b"not json at all\n"
        b"\n"
        b'[1, 2]\n'
        b'{"text": "\xff\xfe"}\n'
        b'{"n": 2}\n'
        b'{"n": 3, "te'
    )
    lines = list(read_log_records([path]))
    assert [line.record for line in lines] == [{"n": 1}, None, None, None, {"n": 2}, None]
    assert [line.line_no for line in lines] == [1, 2, 4, 5, 6, 7]
    assert [line.error for line in lines] == [
        None,
        f"{path}:2: not valid JSON: Expecting value",
        f"{path}:4: not a JSON object, got list",
        f"{path}:5: not valid UTF-8: invalid start byte",
        None,
        f"{path}:7: not valid JSON (unfinished last line): Unterminated string starting at",
    ]
    assert all(line.path == str(path) for line in lines)


def test_reader_reports_a_missing_bad_or_broken_file_once(tmp_path):
    missing = tmp_path / "gone.log"
    not_gzip = tmp_path / "chatbot.log.1.gz"
    not_gzip.write_bytes(b"plain text, not gzip\n")
    cut = tmp_path / "cut.log.2.gz"
    cut.write_bytes(gzip.compress(b'{"n": 1}\n' * 1000)[:-30])

    lines = list(read_log_records([missing, tmp_path, not_gzip, cut]))
    no_file = f"{missing}: cannot read: No such file or directory"
    assert lines[0] == LogLine(str(missing), 0, None, no_file)
    assert lines[1] == LogLine(str(tmp_path), 0, None, f"{tmp_path}: cannot read: Is a directory")
    assert lines[2].error.startswith(f"{not_gzip}: cannot read: Not a gzipped file")
    assert [line.record for line in lines[3:-1]] == [{"n": 1}] * (len(lines) - 4)
    cut_short = "Compressed file ended before the end-of-stream marker was reached"
    assert lines[-1].error == f"{cut}: cannot read: {cut_short}"
    assert lines[-1].line_no == len(lines) - 4


def test_reader_takes_rotated_files_without_base_during_rollover(tmp_path):
    write_lines(tmp_path / "chatbot.log.1", {"n": 1})
    lines = list(read_log_records([tmp_path / "chatbot.log"]))
    assert [(line.record, line.error) for line in lines] == [({"n": 1}, None)]


def test_values_orjson_refuses_are_written_by_the_standard_library(setup, log, log_dir):
    setup()
    big = 2**80
    log.event("odd", seq=big, counts={1: "one"}, text="lone \udc80 surrogate", ok="naïve ☕")
    record = records(log_dir)[-1]
    assert (record["seq"], record["counts"], record["ok"]) == (big, {"1": "one"}, "naïve ☕")
    assert record["text"] == "lone \udc80 surrogate"
    line = (log_dir / "chatbot.log").read_text(encoding="utf-8").splitlines()[-1]
    assert line.startswith('{"ts":"') and ", " not in line.split('"text"')[0]


def test_leading_keys_lists_every_key_a_line_may_start_with():
    # A field named like a key missing from LEADING_KEYS would overwrite it instead of being renamed.
    formatter = logs.JsonLineFormatter(process_name="w1")
    written = formatter._leading_keys(time.time(), "info", "x", 1, "tornado.access")
    assert set(written) == logs.JsonLineFormatter.LEADING_KEYS


def test_reader_keeps_every_whole_line_of_a_cut_or_damaged_gzip_file(tmp_path):
    import zlib

    data = gzip.compress(b"".join(b'{"n": %d}\n' % n for n in range(2000)))
    cut = tmp_path / "chatbot.log.1.gz"
    cut.write_bytes(data[:len(data) // 2])
    # What a reader can get out of that half: every line that ends in it.
    readable = zlib.decompressobj(wbits=31).decompress(data[:len(data) // 2])
    whole = readable[:readable.rindex(b"\n") + 1].count(b"\n")
    lines = list(read_log_records([cut]))
    assert [line.record["n"] for line in lines[:-1]] == list(range(whole))
    assert lines[-1].error.startswith(f"{cut}: cannot read: ")

    damaged = tmp_path / "chatbot.log.2.gz"
    damaged.write_bytes(data[:200] + bytes(b ^ 0xFF for b in data[200:260]) + data[260:])
    lines = list(read_log_records([damaged]))  # zlib's own error, reported like the others
    assert lines[-1].record is None and lines[-1].error.startswith(f"{damaged}: cannot read: ")
    assert all(line.record is not None for line in lines[:-1])


def test_reader_reports_json_the_interpreter_cannot_hold_as_a_bad_line(tmp_path):
    path = tmp_path / "chatbot.log"
    path.write_bytes(b"[" * 100_000 + b"\n" + b'{"a": ' + b"9" * 5000 + b"}\n" + b'{"n": 1}\n'
                     + b'{"t": "\xed\xa0\x80"}\n')
    lines = list(read_log_records([path]))
    assert lines[0].error == f"{path}:1: not readable JSON: nested too deeply"
    assert lines[1].error.startswith(f"{path}:2: not readable JSON: Exceeds the limit")
    assert lines[2].record == {"n": 1}
    assert lines[3].error == f"{path}:4: not valid UTF-8: invalid continuation byte"


def test_a_log_folder_deleted_under_a_running_process_is_made_again(setup, log, log_dir):
    setup()
    log.event("before", n=1)
    flush()
    shutil.rmtree(log_dir)  # an operator clears the logs
    log.event("after", n=2)
    log.event("after", n=3)
    flush()
    assert [record["n"] for record in records(log_dir)] == [2, 3]


def test_a_log_folder_that_cannot_be_written_is_reported_in_one_line_not_a_traceback_per_batch(
        setup, log, log_dir, capsys):
    setup()
    log.event("before", n=1)
    flush()
    shutil.rmtree(log_dir)
    log_dir.write_text("")  # a file where the folder was: nothing can be made there
    for n in range(2, 6):
        log.event("lost", n=n)
        flush()  # a batch each
    err = capsys.readouterr().err
    assert err.splitlines() == [f"warning: logging: cannot write {log_dir / 'chatbot.log'} ({log_dir} is a file, "
                                "not a folder); its lines are lost until it can"]
    log_dir.unlink()
    log.event("after", n=6)
    flush()
    assert [record["n"] for record in records(log_dir)] == [6], "written again once it can be"


@pytest.mark.parametrize("stderr", [None, "closed"])
def test_a_log_that_cannot_be_written_nor_reported_comes_back_once_it_can(setup, log, log_dir, monkeypatch, stderr):
    import io

    setup()
    broken = io.StringIO()
    broken.close()  # a pipe whose reader went away
    monkeypatch.setattr(sys, "stderr", None if stderr is None else broken)
    shutil.rmtree(log_dir)
    log_dir.write_text("")
    log.event("lost", n=1)
    flush()
    log_dir.unlink()
    log.event("after", n=2)
    flush()
    assert [record["n"] for record in records(log_dir)] == [2], "the writer thread lived on"


SHARED_FOLDER_WRITER = """
import logging, sys
from chatbot.logs import EventLog, setup_logging
folder, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
handle = setup_logging(log_dir=folder, max_bytes=4000, backup_count=100000, console="none", process_name=name)
log = EventLog(logging.getLogger("chatbot.test"))
log.event("ready", w=name, n=-1)
handle.hand_over.flush()
print("ready", flush=True)
sys.stdin.readline()  # go
for n in range(count):
    log.event("e", w=name, n=n)
handle.close()
"""


def test_processes_keep_each_other_out_after_the_log_folder_was_made_again(tmp_path):
    folder, count = tmp_path / "logs", 3000

    def writer(name: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", SHARED_FOLDER_WRITER, str(folder), name, str(count)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "ready\n"
        return proc

    first = writer("A")
    shutil.rmtree(folder)  # cleared and made again: A still holds the old lock file
    folder.mkdir()
    second = writer("B")
    for proc in (first, second):
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in (first, second):
        assert proc.wait(120) == 0
    seen = {(line.record["w"], line.record["n"]) for line in read_log_records([folder / "chatbot.log"])
            if line.record is not None and line.record.get("event") == "e"}
    for name in "AB":
        assert sum((name, n) not in seen for n in range(count)) == 0, f"lines of {name} were lost at rollovers"


def test_debug_logging_keeps_the_database_statements_and_their_secrets_out(setup, log, log_dir, tmp_path):
    from chatbot.storage import Store

    setup(level="debug")
    store = Store(f"sqlite:///{tmp_path / 'chatbot.db'}")
    store.open()
    try:
        store.create_user("ann", "ann", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")
    finally:
        store.close()
    logging.getLogger("chatbot.test").debug("debug.kept")
    written = records(log_dir)
    assert "debug.kept" in [record["event"] for record in written], "debug records of the server's own are kept"
    assert [record for record in written if record.get("logger", "").startswith("peewee")] == []
    assert "argon2id" not in (log_dir / "chatbot.log").read_text(encoding="utf-8")


def test_a_forked_process_logs_its_own_pid(tmp_path):
    # The pid is read once per process (a system call per line costs); a worker is a fork.
    child = os.fork()
    if child == 0:
        try:
            handle = setup_logging(log_dir=tmp_path / "child", console="none")
            EventLog(logging.getLogger("chatbot.test")).event("child.says")
            handle.close()
        finally:
            os._exit(0)
    assert os.waitpid(child, 0)[1] == 0
    (record,) = [line.record for line in read_log_records([tmp_path / "child" / "chatbot.log"])]
    assert (record["event"], record["pid"]) == ("child.says", child)
