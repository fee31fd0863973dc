"""`chatbot replay` on logs of real conversations with a real server: offline, as a transcript, and live."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import shutil
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.testing import bind_unused_port
from tornado.web import Application
from tornado.websocket import WebSocketHandler

from bench.bench_replay import write_log
from chatbot.dialogs import BUILTIN_FLOWS
from chatbot.logs import setup_logging
from chatbot.replay import read_sessions, replay_session
from chatbot.replay.command import main, replay
from tests.engine_helpers import make_engine
from tests.server_helpers import Client, running_server, shared_engine

PASSWORD_ANN = "correct horse battery 42"
PASSWORD_BOB = "Tr0ub4dor&3-зебра"
NOT_THE_SAME = "not the same one 7"
WRONG_PASSWORD = "wrong password 1"
SECRETS = (PASSWORD_ANN, PASSWORD_BOB, NOT_THE_SAME, WRONG_PASSWORD)


def cli(*args) -> tuple[int, str, str]:
    """The replay command as a person runs it: exit status, stdout, stderr."""
    result = CliRunner().invoke(replay, [str(arg) for arg in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


async def cli_in_thread(*args) -> tuple[int, str, str]:
    """For --live: the command runs its own event loop, so it runs beside the server's."""
    return await IOLoop.current().run_in_executor(None, lambda: cli(*args))


def status_line(output: str, session_id: str) -> str:
    found = re.search(rf"^{session_id}\s+.*$", output, re.MULTILINE)
    assert found, f"no line for {session_id} in:\n{output}"
    return found.group(0)


# --- recording real conversations ------------------------------------------------------------
@dataclass
class Recording:
    log_dir: Path
    ids: dict[str, str]  # who → session id


class Visitor:
    """One person at the chat page: a connection, its session token and the last seq seen."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.client: Client | None = None
        self.welcome: dict = {}

    async def arrive(self, lang: str = "en") -> str:
        self.client = await Client.connect(self.port)
        self.welcome = await self.client.hello(lang=lang)
        await self.client.recv_until("reply")
        return self.welcome["session"]

    @property
    def token(self) -> str:
        auths = [f["resume"] for f in self.client.frames if f["type"] == "auth"]
        return auths[-1] if auths else self.welcome["resume"]

    @property
    def last_seq(self) -> int:
        return max(f["seq"] for f in self.client.frames if "seq" in f and f["type"] in ("reply", "user"))

    async def reconnect(self, lang: str = "en") -> dict:
        token, last_seq = self.token, self.last_seq
        self.client.close()
        self.client = await Client.connect(self.port)
        welcome = await self.client.hello(resume=token, last_seq=last_seq, lang=lang)
        assert welcome["resumed"] is True
        return welcome

    async def say(self, *texts: str) -> None:
        for text in texts:
            await self.client.say(text)

    async def press(self, action: str) -> None:
        await self.client.press(action)

    def leave(self) -> None:
        self.client.close()


async def conversations(port: int) -> dict[str, str]:
    """Registration, chat, a reconnect, logout; a login with a wrong password first; Russian and a mismatch."""
    ann = Visitor(port)
    ids = {"ann": await ann.arrive()}
    await ann.press("register")  # step 1
    await ann.say("ann", PASSWORD_ANN, PASSWORD_ANN)  # steps 2-4
    await ann.say("who am I", "tell me a joke", "what time is it", "call me Annie")  # steps 5-8
    await ann.reconnect()
    await ann.say("what is my name")  # step 9
    await ann.press("logout")  # step 10
    ann.leave()

    again = Visitor(port)
    ids["login"] = await again.arrive()
    await again.press("login")  # step 1
    await again.say("ann", WRONG_PASSWORD)  # steps 2-3: a failed login
    await again.say("ann", PASSWORD_ANN, "thanks")  # steps 4-6
    again.leave()

    bob = Visitor(port)
    ids["bob"] = await bob.arrive("ru")
    await bob.press("register")
    await bob.say("bob", PASSWORD_BOB, NOT_THE_SAME)  # the confirmation does not match
    await bob.say(PASSWORD_BOB, PASSWORD_BOB, "привет")
    await bob.press("logout")
    bob.leave()
    return ids


async def record(tmp: Path) -> Recording:
    with setup_logging(log_dir=tmp / "logs", console="none"):
        async with running_server(tmp) as server:
            ids = await conversations(server.port)
    return Recording(tmp / "logs", ids)


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Recording:
    return asyncio.run(record(tmp_path_factory.mktemp("recorded")))


def changed_flows(folder: Path) -> Path:
    """The built-in chat and login flows with one reply text and one transition changed."""
    folder.mkdir(exist_ok=True)
    chat = (BUILTIN_FLOWS / "chat.yaml").read_text(encoding="utf-8")
    old = 'en: "You are logged in as {user}."'
    assert chat.count(old) == 1
    (folder / "chat.yaml").write_text(chat.replace(old, 'en: "You are signed in as {user}."'), encoding="utf-8")
    login = (BUILTIN_FLOWS / "login.yaml").read_text(encoding="utf-8")
    old = "dest: ask_username\n    say:\n      en: \"Wrong username or password."
    assert login.count(old) == 1
    (folder / "login.yaml").write_text(login.replace(old, old.replace("ask_username", "ask_password")),
                                       encoding="utf-8")
    return folder


# --- offline replay ----------------------------------------------------------------------------
def test_every_recorded_session_replays_the_same(recording, capsys):
    assert main([str(recording.log_dir), "--session", recording.ids["ann"]]) == 0
    assert "same        11 steps" in capsys.readouterr().out
    code, out, err = cli(recording.log_dir)
    assert code == 0, out + err
    steps = {"ann": 11, "login": 7, "bob": 9}
    for who, session_id in recording.ids.items():
        assert re.fullmatch(rf"{session_id}\s+same\s+{steps[who]} steps\s+user (ann|bob)",
                            status_line(out, session_id)), out
    assert "3 session(s) from 1 file(s): 3 same, 0 diverged, 0 incomplete; 27 steps" in out
    assert err == ""


def test_the_json_report_and_choosing_sessions_by_the_start_of_their_id(recording):
    code, out, _ = cli(recording.log_dir, "--format", "json", "--session", recording.ids["bob"][:7],
                       "--session", recording.ids["login"], "--session", recording.ids["bob"])  # named twice
    assert code == 0
    report = json.loads(out)
    assert [(s["session"], s["status"], s["steps"]) for s in report["sessions"]] == [
        (recording.ids["bob"], "same", 9), (recording.ids["login"], "same", 7)]
    assert report["summary"]["same"] == 2 and report["summary"]["diverged"] == 0
    assert report["summary"]["messages"] == 14 and report["warnings"] == []


def test_changed_flows_diverge_at_the_right_steps_with_a_readable_diff(recording, tmp_path):
    flows = changed_flows(tmp_path / "flows")
    code, out, err = cli(recording.log_dir, "--flows", flows)
    assert code == 1, out + err
    ann, login, bob = recording.ids["ann"], recording.ids["login"], recording.ids["bob"]
    assert "DIVERGED    at step 5" in status_line(out, ann)
    assert "DIVERGED    at step 3" in status_line(out, login)
    assert "same" in status_line(out, bob)
    assert "step 5: message 'who am I' in chat:listening" in out
    assert ("    replies:\n"
            "      - expected: You are logged in as ann.\n"
            "      +   actual: You are signed in as ann.\n") in out
    assert "step 3: password (not logged) in login:ask_password" in out
    assert ("    transitions:\n"
            "      - expected: login:ask_password → login:ask_username  (text)\n"
            "      +   actual: login:ask_password → login:ask_password  (text)\n") in out
    assert ("      - expected: What is your username?  [Cancel → cancel]\n"
            "      +   actual: Your password, please.  [Cancel → cancel]  (input: password)") in out
    assert "1 same, 2 diverged, 0 incomplete" in out

    code, out, _ = cli(recording.log_dir, "--flows", flows, "--format", "json")
    report = {s["session"]: s for s in json.loads(out)["sessions"]}
    assert code == 1
    difference = report[ann]["divergence"]
    assert difference["step"] == 5 and difference["input"] == "who am I"
    assert difference["differences"] == {"replies": {
        "expected": [{"text": "You are logged in as ann.", "buttons": [], "input": "text"}],
        "actual": [{"text": "You are signed in as ann.", "buttons": [], "input": "text"}]}}
    assert report[login]["divergence"]["step"] == 3
    assert report[login]["divergence"]["input"] == "[redacted]"
    assert set(report[login]["divergence"]["differences"]) == {"replies", "transitions"}


@dataclass
class Rotated:
    log_dir: Path
    session_id: str


@pytest.fixture(scope="module")
def rotated(tmp_path_factory) -> Rotated:
    """One long conversation logged into many small compressed files."""
    tmp = tmp_path_factory.mktemp("rotated")

    async def chat():
        with setup_logging(log_dir=tmp / "logs", console="none", max_bytes=1500, backup_count=200,
                           compress_backups=True):
            async with running_server(tmp) as server:
                visitor = Visitor(server.port)
                session_id = await visitor.arrive()
                await visitor.press("register")
                await visitor.say("dora", PASSWORD_ANN, PASSWORD_ANN)
                for index in range(12):
                    await visitor.say(f"call me Dora {index}", "what is my name")
                visitor.leave()
        return session_id

    return Rotated(tmp / "logs", asyncio.run(chat()))


def without_time(report: str) -> str:
    return re.sub(r" in \d+\.\d+ s$", "", report, flags=re.MULTILINE)


def test_a_session_spread_over_rotated_and_compressed_files_replays_whole(rotated):
    files = sorted(rotated.log_dir.glob("chatbot.log.*.gz"))
    assert len(files) >= 5, "the conversation spans many files"
    code, out, err = cli(rotated.log_dir / "chatbot.log")
    assert code == 0, out + err
    assert re.fullmatch(rf"{rotated.session_id}\s+same\s+29 steps\s+user dora",
                        status_line(out, rotated.session_id))
    assert f"from {len(files) + 1} file(s)" in out
    _assert_no_secret_in(rotated.log_dir)


def test_the_files_of_one_log_named_in_any_order_replay_as_its_folder(rotated, tmp_path):
    logs = tmp_path / "logs"
    shutil.copytree(rotated.log_dir, logs)
    packed = logs / "chatbot.log.3.gz"  # unpacked by someone reading it: .gz or not, its place is the same
    (logs / "chatbot.log.3").write_bytes(gzip.decompress(packed.read_bytes()))
    packed.unlink()
    code, expected, err = cli(logs)
    assert code == 0 and err == "" and "same        29 steps" in status_line(expected, rotated.session_id)

    shell_order = sorted(logs.glob("chatbot.log.*"))  # as `logs/chatbot.log.*` expands: .1, .10, .11, …, .2
    assert len(shell_order) >= 10, "numbers of two digits sort before some of one digit"
    base = logs / "chatbot.log"
    for named in ([*shell_order, base], [*reversed(shell_order), base],
                  [shell_order[4], logs, shell_order[0], shell_order[4], base]):
        code, out, err = cli(*named)
        assert (code, without_time(out), err) == (0, without_time(expected), ""), [path.name for path in named]


def test_a_session_across_a_server_restart_with_logs_in_two_folders_replays_in_either_order(tmp_path):
    async def chat():
        with setup_logging(log_dir=tmp_path / "before", console="none"):
            async with running_server(tmp_path) as server:
                visitor = Visitor(server.port)
                session_id = await visitor.arrive()
                await visitor.press("register")
                await visitor.say("erin", PASSWORD_ANN, PASSWORD_ANN, "call me Eri")
                token, last_seq = visitor.token, visitor.last_seq
                visitor.leave()
        with setup_logging(log_dir=tmp_path / "after", console="none"):
            async with running_server(tmp_path) as server:
                client = await Client.connect(server.port)
                assert (await client.hello(resume=token, last_seq=last_seq))["resumed"] is True
                await client.say("what is my name")
                await client.say("who am i")
                client.close()
        return session_id

    session_id = asyncio.run(chat())
    for order in (["before", "after"], ["after", "before"]):
        code, out, err = cli(*(tmp_path / name for name in order))
        assert code == 0, out + err
        assert re.fullmatch(rf"{session_id}\s+same\s+8 steps\s+user erin", status_line(out, session_id)), out


def test_a_language_switch_on_reconnect_replays_when_the_log_names_the_language(tmp_path):
    async def chat():
        with setup_logging(log_dir=tmp_path / "logs", console="none"):
            async with running_server(tmp_path) as server:
                visitor = Visitor(server.port)
                session_id = await visitor.arrive("en")
                await visitor.say("hello")
                await visitor.reconnect(lang="ru")
                await visitor.say("hello")
                visitor.leave()
        return session_id

    session_id = asyncio.run(chat())
    log = tmp_path / "logs" / "chatbot.log"
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    resumed = next(record for record in lines if record["event"] == "session.resumed")
    resumed["lang"] = "ru"  # what the server is to log (and may log already)
    log.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in lines), encoding="utf-8")
    code, out, _ = cli(log)
    assert code == 0 and "same        3 steps" in status_line(out, session_id), out

    del resumed["lang"]
    log.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in lines), encoding="utf-8")
    code, out, _ = cli(log)
    assert code == 1 and "at step 2" in status_line(out, session_id), "without it, step 2 replays in English"


# --- bad input ---------------------------------------------------------------------------------
def copy_log(recording: Recording, tmp_path: Path) -> tuple[Path, list[str]]:
    target = tmp_path / "chatbot.log"
    shutil.copy(recording.log_dir / "chatbot.log", target)
    return target, target.read_text(encoding="utf-8").splitlines(keepends=True)


def test_bad_lines_are_warnings_naming_file_and_line_and_the_rest_replays(recording, tmp_path):
    log, lines = copy_log(recording, tmp_path)
    inserted = [
        "this is not json\n",
        '{"ts": "2026-11-25T16:40:01.123Z", "level": "info", "event": "mystery.event", "pid": 1}\n',
        '{"asctime": "2026-11-25 16:40:01", "levelname": "INFO", "message": "message.in", "text": "hi"}\n',
        '{"ts": "2026-11-25T16:40:01.123Z", "level": "info", "event": "message.in", "pid": 1, "session": "x1"}\n',
        '[1, 2, 3]\n',
    ]
    lines[3:3] = inserted
    lines.append('{"ts": "2026-11-25T16:41:36.1')  # the server died while writing
    log.write_text("".join(lines), encoding="utf-8")
    code, out, err = cli(log)
    assert code == 0, out + err
    assert "3 same, 0 diverged, 0 incomplete" in out
    assert f"warning: {log}:4: not valid JSON: Expecting value" in err
    assert f"warning: {log}:5: unknown event 'mystery.event', skipped" in err
    assert f"warning: {log}:6: not a chatbot event record (no 'event' field): an older log format?" in err
    assert f"warning: {log}:7: message.in without 'text', skipped: an older log format?" in err
    assert f"warning: {log}:8: not a JSON object, got list" in err
    assert f"warning: {log}:{len(lines)}: not valid JSON (unfinished last line)" in err
    assert "; 6 warning(s)" in out


@pytest.mark.parametrize("event, which, reason", [
    ("message.in", 1, r"step 3 \(.*\): the log lacks the input of this turn, see the warnings \(same up to there, "
                      r"3 steps\)"),
    # Without its effect line a turn asks the environment for an answer the log no longer has;
    # without a transition it seems to move elsewhere: both looked like changed flows.
    ("effect", -1, r"step \d+ \(.*\): the replay differs from what the log holds of this turn, and a line near "
                   r"it is unusable, see the warnings"),
    ("transition", -1, r"step \d+ \(.*\): the replay differs from what the log holds of this turn, and a line "
                       r"near it is unusable, see the warnings"),
])
def test_a_damaged_line_of_a_turn_leaves_only_its_session_incomplete(recording, tmp_path, event, which, reason):
    log, lines = copy_log(recording, tmp_path)
    login = recording.ids["login"]
    damaged = [i for i, line in enumerate(lines) if f'"{login}"' in line and f'"{event}"' in line][which]
    lines[damaged] = lines[damaged][:40] + "\n"  # a damaged disk block
    log.write_text("".join(lines), encoding="utf-8")
    code, out, err = cli(log)
    assert code == 0, out + err
    assert re.search(rf"incomplete  {reason}", status_line(out, login)), out
    assert "2 same, 0 diverged, 1 incomplete" in out
    assert f"{log}:{damaged + 1}: not valid JSON" in err


@pytest.mark.parametrize("near", [
    '{"ts": "2026-11-25T16:40:01.123Z", "level": "info", "event": "mystery.event", "pid": 1}\n',  # not its line
    '{"ts": "2026-11-25T16:40:01.1\n',  # may have been its line, but its replies are all there
])
def test_a_changed_reply_diverges_even_beside_an_unusable_line(recording, tmp_path, near):
    log, lines = copy_log(recording, tmp_path)
    ann = recording.ids["ann"]
    asked = [i for i, line in enumerate(lines) if f'"{ann}"' in line and "who am I" in line][0]
    lines.insert(asked + 1, near)
    log.write_text("".join(lines), encoding="utf-8")
    code, out, err = cli(log, "--flows", changed_flows(tmp_path / "flows"), "--session", ann)
    assert code == 1 and "DIVERGED    at step 5" in status_line(out, ann), out + err


def test_odd_lines_of_every_kind_are_warnings_and_never_stop_the_reading(recording, tmp_path):
    log, lines = copy_log(recording, tmp_path)
    odd = [
        "[" * 100_000 + "\n",
        '{"a": ' + "9" * 5000 + "}\n",
        '{"event": ["message.in"], "session": "x"}\n',
        '{"ts": 5, "level": "info", "event": "server.start", "pid": 1}\n',
        '{"ts": "", "event": "reply.out", "session": "x2", "seq": 1, "text": "hi", "buttons": "b"}\n',
        '{"ts": "", "event": "message.in", "session": "x3", "text": "hi", "user": {"name": "ann"}}\n',
        '{"ts": "", "event": "session.created", "session": "x4", "pid": {"host": "a"}}\n',
        '{"ts": "", "event": "reply.out", "session": "x5", "seq": 1, "text": "hi", "process": ["w0"]}\n',
    ]
    known = [f'{{"ts": "", "level": "info", "event": "{name}", "pid": 1, "session": "x6"}}\n'
             for name in ("session.token_reissued", "session.token_not_reissued", "sessions.expiry_failed")]
    lines[3:3] = odd + known
    data = "".join(lines).encode("utf-8")
    first = data.index(b"\n", data.index(b"\n") + 1) + 1  # after the second line
    data = data[:first] + b'{"event": "message.in", "text": "\xed\xa0\x80"}\n' + data[first:]
    log.write_bytes(data)
    code, out, err = cli(log)
    assert code == 0, out + err
    assert "3 same, 0 diverged, 0 incomplete" in out
    assert f"warning: {log}:3: not valid UTF-8: invalid continuation byte" in err
    assert f"warning: {log}:5: not readable JSON: nested too deeply" in err
    assert f"warning: {log}:6: not readable JSON: " in err
    assert f"warning: {log}:7: not a chatbot event record (no 'event' field)" in err
    assert f"warning: {log}:8: server.start: 'ts' must be a string, got 5, taken as unknown" in err
    assert f"warning: {log}:9: reply.out: 'buttons' must be a list or null, got 'b', skipped" in err
    assert f"warning: {log}:10: message.in: 'user' must be a string or null, got {{'name': 'ann'}}, skipped" in err
    assert f"warning: {log}:11: session.created: 'pid' must be a whole number or null, got {{'host': 'a'}}" in err
    assert f"warning: {log}:12: reply.out: 'process' must be a string or null, got ['w0']" in err
    assert f"{log}:13:" not in err and f"{log}:14:" not in err and f"{log}:15:" not in err, "events of the server"
    code, out, _ = cli(log, "--transcript", recording.ids["ann"])
    assert code == 0 and "who am I" in out


def test_a_user_text_with_a_lone_surrogate_is_printed_escaped(recording, tmp_path):
    log, lines = copy_log(recording, tmp_path)
    thanks = next(i for i, line in enumerate(lines) if '"message.in"' in line and '"text":"thanks"' in line)
    lines[thanks] = lines[thanks].replace('"text":"thanks"', '"text":"thanks \\ud800"')
    log.write_text("".join(lines), encoding="utf-8")
    code, out, err = cli(log, "--transcript", recording.ids["login"])
    assert code == 0, err
    assert "thanks \\ud800" in out


def lines_of(lines: list[str], session: str, event: str) -> list[int]:
    return [i for i, line in enumerate(lines) if f'"{session}"' in line and f'"event":"{event}"' in line]


def test_a_lost_reply_line_leaves_its_session_incomplete_not_diverged(recording, tmp_path):
    log, lines = copy_log(recording, tmp_path)
    login, bob = recording.ids["login"], recording.ids["bob"]
    lines[lines_of(lines, login, "reply.out")[3]] = "{garbled\n"  # a turn that logged transitions too
    lines[lines_of(lines, bob, "reply.out")[0]] = "{garbled\n"  # the greeting's
    log.write_text("".join(lines), encoding="utf-8")
    code, out, _ = cli(log)
    assert code == 0, out
    assert re.search(r"incomplete  step 3 .*the log lacks", status_line(out, login)), out
    assert re.search(r"incomplete  step 0 .*the log lacks the replies of this turn", status_line(out, bob))
    assert "1 same, 0 diverged, 2 incomplete" in out


def test_a_turn_missing_from_the_log_is_found_by_its_seqs(recording, tmp_path):
    log, lines = copy_log(recording, tmp_path)
    ann = recording.ids["ann"]
    # Every line of one turn ("tell me a joke"): its input, what it did, its replies.
    start = next(i for i, line in enumerate(lines) if f'"{ann}"' in line and '"text":"tell me a joke"' in line
                 and '"message.in"' in line)
    end = next(i for i in range(start + 1, len(lines)) if f'"{ann}"' in lines[i] and '"message.in"' in lines[i])
    del lines[start:end]
    log.write_text("".join(lines), encoding="utf-8")
    code, out, _ = cli(log)
    assert code == 0, out
    assert re.search(r"incomplete  step 6 .*its first reply is seq \d+, not \d+: the log lacks a turn or a reply "
                     r"before it; no line near it is unusable", status_line(out, ann)), out


def test_a_turn_lacking_lines_points_to_the_warnings_only_when_a_line_near_it_is_unusable(recording, tmp_path):
    log, lines = copy_log(recording, tmp_path)
    login, bob = recording.ids["login"], recording.ids["bob"]
    # Bob's session is only its greeting, which logged no reply (the server failed on it).
    greeting = lines_of(lines, bob, "session.created")[0]
    lines = [line for i, line in enumerate(lines)
             if f'"{bob}"' not in line or (i <= greeting + 1 and '"event":"reply.out"' not in line)]
    assert len(lines_of(lines, bob, "effect")) == 1, "its answer for the greeting's wording is left"
    log.write_text("".join(lines), encoding="utf-8")
    code, out, err = cli(log)
    assert code == 0 and err == "", out + err
    assert re.fullmatch(rf"{bob}\s+incomplete  step 0 \({re.escape(str(log))}:\d+\): the log lacks the replies of "
                        r"this turn; no line near it is unusable: not logged, or in a file not given",
                        status_line(out, bob)), out

    # A damaged line in a turn of another session, before Bob's: only that turn is sent to the warnings.
    lines[lines_of(lines, login, "reply.out")[3]] = "{garbled\n"
    log.write_text("".join(lines), encoding="utf-8")
    code, out, err = cli(log)
    assert code == 0 and f"warning: {log}:" in err, out + err
    assert re.search(r"incomplete  step 3 .*the log lacks .*, see the warnings", status_line(out, login)), out
    assert "see the warnings" not in status_line(out, bob), out


def test_a_slot_value_json_has_no_form_for_compares_as_the_log_wrote_it():
    import dataclasses
    import enum
    from datetime import timezone

    from chatbot.logs import JsonLineFormatter
    from chatbot.replay.runner import jsonable

    class Colour(enum.Enum):
        RED = "red"

    @dataclasses.dataclass
    class Point:
        x: int

    formatter = JsonLineFormatter()
    for value in (datetime(2026, 11, 25, 16, 40, tzinfo=timezone.utc), Colour.RED, Point(1), b"ab",
                  float("nan"), float("inf"), (1, "two"), {"when": datetime(2026, 1, 1)}, 2 ** 70, 1.5, None):
        line = formatter.event_line("chatbot.events", 20, "slot.set", {"value": value}, time.time())
        assert json.loads(line)["value"] == jsonable(value) or value != value, value


def test_a_live_url_that_is_not_a_websocket_and_an_impossible_path_exit_2(recording, tmp_path):
    for url in ("foo", "http://127.0.0.1:1/", ""):
        code, _, err = cli(recording.log_dir, "--live", url)
        assert code == 2 and err == f"replay: {url}: not a WebSocket URL (expected ws://HOST:PORT/ws or wss://…)\n"
    code, _, err = cli(tmp_path / ("a" * 300))
    assert code == 2 and err.endswith(": file name too long\n"), err
    for option in ("--timeout", "--speed"):  # NaN passes every comparison with a bound
        code, _, err = cli(recording.log_dir, "--live", "ws://127.0.0.1:1/ws", option, "nan")
        assert code == 2 and f"Invalid value for '{option}': 'nan' is not a finite number" in err, err


def test_a_missing_recorded_answer_is_a_divergence_that_says_what_was_asked(recording, tmp_path):
    log, lines = copy_log(recording, tmp_path)
    ann = recording.ids["ann"]
    first_effect = next(i for i, line in enumerate(lines) if f'"{ann}"' in line and '"effect"' in line)
    del lines[first_effect]
    log.write_text("".join(lines), encoding="utf-8")
    code, out, _ = cli(log)
    assert code == 1
    assert "DIVERGED    at step 0" in status_line(out, ann)
    assert "the flow asked 'random_index' but the log recorded no more answers" in out


def test_unusable_input_exits_2_with_the_reason(recording, tmp_path):
    assert cli(tmp_path / "gone.log")[0::2] == (2, f"replay: {tmp_path / 'gone.log'}: no such file\n")
    empty = tmp_path / "empty.log"
    empty.write_text("")
    assert cli(empty)[0::2] == (2, f"replay: no readable records in {empty}\n")
    garbage = tmp_path / "garbage.log"
    garbage.write_text("not json\n")
    code, _, err = cli(garbage)
    assert code == 2 and err.endswith(f"replay: no readable records in {garbage}\n")
    server_only = tmp_path / "server.log"
    server_only.write_text('{"ts": "2026-11-25T16:40:01.123Z", "event": "server.start", "pid": 1}\n')
    code, _, err = cli(server_only)
    assert code == 2 and "replay: no chat sessions in" in err
    code, _, err = cli(recording.log_dir, "--session", "nope")
    assert code == 2 and err.startswith("replay: no session 'nope' in ")
    code, _, err = cli(recording.log_dir, "--flows", tmp_path / "no-such-folder")
    assert code == 2 and "no such folder" in err


# --- transcript --------------------------------------------------------------------------------
def test_the_transcript_reads_like_the_conversation(recording):
    ann = recording.ids["ann"]
    code, out, _ = cli(recording.log_dir, "--transcript", ann[:8])
    assert code == 0
    lines = out.splitlines()
    assert re.fullmatch(rf"session {ann} · started \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC · language en · .+", lines[0])
    assert re.fullmatch(r"\d\d:\d\d:\d\d  bot      (Hello! I am your chat bot\. Do you want to log in or register\?"
                        r"|Hi there! Log in or create an account to start chatting\.)", lines[1])
    assert lines[2].strip() == "[Log in] [Register]"
    assert re.fullmatch(r"\d\d:\d\d:\d\d  visitor  pressed \[Register\]", lines[3])
    assert lines[4].strip() == "· hub:welcome → hub:registration_handoff → registration:ask_username  (register)"
    text = "\n".join(line[10:] for line in lines)  # without the times
    assert "visitor  •••••• (password)\n" in text
    assert "· registered ann\n" in text
    assert "ann      call me Annie\n" in text and "· nickname = 'Annie'" in text
    assert "---      disconnected (connection" in text and "---      reconnected (connection" in text
    assert text.index("reconnected") < text.index("ann      what is my name")
    assert "bot      You asked me to call you Annie." in text
    assert "· ann logged out" in text
    for secret in SECRETS:
        assert secret not in out

    code, out, _ = cli(recording.log_dir, "--transcript", recording.ids["login"], "--format", "json")
    entries = json.loads(out)["entries"]
    assert [e.get("text") or e.get("action") for e in entries if "step" in e] == [
        None, "login", "ann", "[redacted]", "ann", "[redacted]", "thanks"]
    assert entries[3]["secret"] is True and entries[3]["accounts"] == [
        {"event": "account.login", "user": "ann", "ok": False, "reason": "bad_credentials", "result": "failed"}]


@pytest.mark.parametrize("output", ["text", "json"])
def test_a_visitors_terminal_control_characters_are_shown_escaped_not_sent_to_the_terminal(recording, tmp_path,
                                                                                          output):
    log, lines = copy_log(recording, tmp_path)
    ann = recording.ids["ann"]
    # What a visitor typed: clear the screen, set the window's title, overwrite the line, reorder it.
    planted = "\\u001b[2J\\u001b]0;owned\\u0007 x\\rfake\\u202eevil\\u0085"
    lines = [line.replace("call me Annie", f"call me {planted}") for line in lines]
    log.write_text("".join(lines), encoding="utf-8")
    code, transcript, _ = cli(log, "--transcript", ann, "--format", output)
    code_report, report, _ = cli(log, "--session", ann, "--format", output)
    assert code == 0 and code_report == 1, report  # the nickname's reply now differs from the replay's
    for out in (transcript, report):
        assert not {"\x1b", "\x07", "\r", "\u202e", "\x85"} & set(out)
    if output == "json":
        text = [e["text"] for e in json.loads(transcript)["entries"] if "call me" in str(e.get("text"))]
        assert text == ["call me \x1b[2J\x1b]0;owned\x07 x\rfake\u202eevil\x85"], "the same text, escaped in JSON"
    else:
        assert "call me \\u001b[2J\\u001b]0;owned\\u0007 x\\u000dfake\\u202eevil\\u0085" in transcript


@pytest.mark.gen_test(timeout=60)
async def test_the_transcript_keeps_reconnects_with_no_turn_between_them_in_order(tmp_path):
    log_dir = tmp_path / "logs"

    async def left(count: int) -> None:
        """Until the log holds `count` closed connections: each reconnect comes after the close."""
        deadline = time.monotonic() + 10
        while (log_dir / "chatbot.log").read_text().count('"event":"conn.close"') < count:
            assert time.monotonic() < deadline, "the server never logged the close"
            await asyncio.sleep(0.02)

    with setup_logging(log_dir=log_dir, console="none"):
        async with running_server(tmp_path) as server:
            visitor = Visitor(server.port)
            session_id = await visitor.arrive()
            await visitor.say("hello")
            token, last_seq = visitor.token, visitor.last_seq  # no turn after this one
            for closed in (1, 2):
                visitor.leave()
                await left(closed)
                visitor.client = await Client.connect(server.port)
                assert (await visitor.client.hello(resume=token, last_seq=last_seq))["resumed"] is True
            visitor.leave()
            await left(3)
    code, out, _ = cli(log_dir, "--transcript", session_id)
    assert code == 0
    marks = [line[19:] for line in out.splitlines() if line[10:13] == "---"]
    assert [re.sub(r" \(connection \w+\)", "", mark) for mark in marks] == [
        "disconnected", "reconnected, language en", "disconnected", "reconnected, language en", "disconnected"]
    conns = [re.search(r"connection (\w+)", mark).group(1) for mark in marks]
    assert conns[1] == conns[2] and conns[3] == conns[4] and len(set(conns)) == 3


# --- live --------------------------------------------------------------------------------------
@pytest.mark.gen_test(timeout=90)
async def test_live_replay_against_a_fresh_server_is_the_same(recording, tmp_path):
    async with running_server(tmp_path) as server:
        code, out, err = await cli_in_thread(recording.log_dir, "--live", f"ws://127.0.0.1:{server.port}/ws")
    assert code == 0, out + err
    assert "live replay of 3 session(s)" in out and "3 same, 0 diverged, 0 incomplete; 27 steps" in out

    bob = read_sessions([recording.log_dir]).sessions[recording.ids["bob"]]
    span = (datetime.fromisoformat(bob.steps[-1].ts) - datetime.fromisoformat(bob.steps[0].ts)).total_seconds()
    async with running_server(tmp_path / "paced") as server:
        started = time.monotonic()
        code, out, err = await cli_in_thread(recording.log_dir, "--live", f"ws://127.0.0.1:{server.port}/ws",
                                             "--session", recording.ids["bob"], "--speed", "0.5")
        elapsed = time.monotonic() - started
    assert code == 0 and "1 same" in out, out + err
    assert elapsed >= span / 0.5, "--speed 0.5 plays the recorded pauses twice as long"


@pytest.mark.gen_test(timeout=90)
async def test_live_replay_takes_the_language_a_reconnect_chose(tmp_path):
    # Greetings have several wordings: a live server picks its own, which is checked against
    # what the flows can say in the session's language, so replay must know that language.
    with setup_logging(log_dir=tmp_path / "logs", console="none"):
        async with running_server(tmp_path / "recorded") as server:
            visitor = Visitor(server.port)
            session_id = await visitor.arrive("en")
            await visitor.reconnect(lang="ru")
            await visitor.say(*["привет"] * 6)
            visitor.leave()
    async with running_server(tmp_path / "fresh") as server:
        code, out, err = await cli_in_thread(tmp_path / "logs", "--live", f"ws://127.0.0.1:{server.port}/ws")
    assert code == 0 and "same" in status_line(out, session_id), out + err


@pytest.mark.gen_test(timeout=90)
async def test_live_replay_reports_changed_replies_and_logins_it_cannot_make(recording, tmp_path):
    changed = make_engine(changed_flows(tmp_path / "flows"))
    async with running_server(tmp_path / "changed", engine=changed) as server:
        code, out, err = await cli_in_thread(recording.log_dir, "--live", f"ws://127.0.0.1:{server.port}/ws")
    assert code == 1, out + err
    assert "DIVERGED    at step 5" in status_line(out, recording.ids["ann"])
    assert ("      - expected: You are logged in as ann.\n"
            "      +   actual: You are signed in as ann.\n") in out
    assert "DIVERGED    at step 3" in status_line(out, recording.ids["login"])

    async with running_server(tmp_path / "fresh", engine=shared_engine()) as server:
        code, out, err = await cli_in_thread(recording.log_dir, "--live", f"ws://127.0.0.1:{server.port}/ws",
                                             "--session", recording.ids["login"])
    assert code == 0, out + err
    line = status_line(out, recording.ids["login"])
    assert "incomplete  step 5 (" in line and "logs in as 'ann', whose password is not in the log" in line
    assert "(same up to there, 5 steps)" in line, "the failed login before it was compared"


def test_live_replay_of_an_unreachable_server_exits_2(recording):
    code, _, err = cli(recording.log_dir, "--live", "ws://127.0.0.1:9/ws", "--timeout", "2")
    assert code == 2 and err.startswith("replay: ws://127.0.0.1:9/ws: cannot open a WebSocket:")

    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes connections, never answers the handshake
        url = f"ws://127.0.0.1:{silent.getsockname()[1]}/ws"
        code, _, err = cli(recording.log_dir, "--live", url, "--timeout", "0.5")
    assert (code, err) == (2, f"replay: {url}: cannot open a WebSocket: no answer within 0.5 s\n")


class GreetsThenCloses(WebSocketHandler):
    """A server that goes away in the middle of a conversation, without saying why."""

    def on_message(self, message) -> None:
        self.write_message(json.dumps({"type": "welcome", "session": "s1", "resume": "t1", "resumed": False}))
        self.close()


@pytest.mark.gen_test(timeout=30)
async def test_live_replay_says_how_a_server_that_went_away_failed(recording):
    sock, port = bind_unused_port()
    server = HTTPServer(Application([("/ws", GreetsThenCloses)]))
    server.add_sockets([sock])
    try:
        code, out, err = await cli_in_thread(recording.log_dir, "--live", f"ws://127.0.0.1:{port}/ws",
                                             "--session", recording.ids["ann"])
    finally:
        server.stop()
    assert code == 1, out + err
    problem = out.splitlines()[2]
    # Which of the two it is depends on when the client notices the close; either has its reason.
    assert re.fullmatch(r"    (the server closed the connection|the connection failed: \S.*)", problem), out


# --- secrecy and the benchmark's log -----------------------------------------------------------
def _assert_no_secret_in(folder: Path) -> None:
    files = [path for path in folder.iterdir() if path.name.startswith("chatbot.log")]
    assert files
    for path in files:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in raw, f"{secret!r} is in {path}"


def test_no_password_reaches_any_log_file(recording):
    assert '"secret":true' in (recording.log_dir / "chatbot.log").read_text(encoding="utf-8")
    _assert_no_secret_in(recording.log_dir)


def test_the_benchmark_writes_logs_that_replay_the_same(tmp_path):
    engine = make_engine()
    written = write_log(tmp_path, engine, 150)
    outcomes = [replay_session(engine, s) for s in read_sessions([tmp_path]).sessions.values()]
    assert {outcome.status for outcome in outcomes} == {"same"}
    assert sum(outcome.steps - 1 for outcome in outcomes) == written >= 150


def test_a_turn_refused_for_a_runaway_pattern_is_shown_and_the_rest_replays_the_same(tmp_path):
    flows = tmp_path / "flows"
    flows.mkdir()
    hub = (BUILTIN_FLOWS / "hub.yaml").read_text(encoding="utf-8")
    assert hub.count("en: ['^👋$']") == 1
    (flows / "hub.yaml").write_text(hub.replace("en: ['^👋$']", "en: ['^(a|aa)+$']"), encoding="utf-8")

    async def converse() -> str:
        with setup_logging(log_dir=tmp_path / "logs", console="none"):
            async with running_server(tmp_path / "data", make_engine(flows)) as server:
                visitor = Visitor(server.port)
                session = await visitor.arrive()
                await visitor.client.send({"type": "message", "id": "slow", "text": "a" * 40 + "b"})
                assert (await visitor.client.recv())["code"] == "pattern_timeout"
                await visitor.say("hello", "log in")
                visitor.leave()
        return session

    session = asyncio.run(converse())
    code, out, err = cli(tmp_path / "logs", "--flows", flows)
    assert code == 0, out + err
    assert re.search(r"same\s+3 steps", status_line(out, session)), out
    assert "unknown event" not in out + err
    code, out, _ = cli(tmp_path / "logs", "--flows", flows, "--transcript", session)
    assert code == 0
    assert (f"· the server failed on this turn ({flows / 'hub.yaml'}:29: intents.greet.patterns.en[0]: "
            "too slow (turn.pattern_timeout))") in out, out


def test_every_event_the_server_logs_is_known_to_the_reader():
    from chatbot.replay import reader

    source = "\n".join(path.read_text(encoding="utf-8") for path in Path(reader.__file__).parents[1].rglob("*.py")
                       if "replay" not in path.parts)
    logged = set(re.findall(r'events\.(?:event|warning|error)\(\s*"([a-z_.]+)"', source))
    assert {"message.in", "storage.failed", "turn.pattern_timeout"} <= logged, "the search finds them"
    known = set(reader._Builder().handlers) | reader.TURN_EVENTS | reader.IGNORED_EVENTS
    assert logged - known == set()


PICKER_FLOW = """\
name: picker
languages: [en]
entry: {command: /pick, access: anyone, title: "a number"}
initial: picked
states:
  - name: picked
    on_enter: pick_random
    say: "picked {picked}"
    goto: hub
"""
PICKER_ACTIONS = """\
from chatbot.dialogs import action


@action(sets=("picked",))
def pick_random(ctx, arg=None):
    ctx.set_slot("picked", ctx.env.random_index(1000))
"""


@pytest.mark.gen_test(timeout=90)
async def test_live_replay_accepts_a_reply_the_server_picked_among_more_choices_than_it_can_try(tmp_path):
    from chatbot.dialogs import Registry

    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "picker.yaml").write_text(PICKER_FLOW, encoding="utf-8")
    (tmp_path / "picker_actions.py").write_text(PICKER_ACTIONS, encoding="utf-8")
    registry = Registry.with_builtins()
    registry.load(str(tmp_path / "picker_actions.py"))
    engine = make_engine(tmp_path / "flows", registry)
    with setup_logging(log_dir=tmp_path / "logs", console="none"):
        async with running_server(tmp_path / "recorded", engine=engine) as server:
            visitor = Visitor(server.port)
            session_id = await visitor.arrive("en")
            await visitor.say("/pick", "/pick", "/pick")
            visitor.leave()
    code, out, err = cli(tmp_path / "logs", "--flows", tmp_path / "flows", "--actions", tmp_path / "picker_actions.py")
    assert code == 0 and "same" in status_line(out, session_id), out + err
    async with running_server(tmp_path / "fresh", engine=engine) as server:
        code, out, err = await cli_in_thread(tmp_path / "logs", "--live", f"ws://127.0.0.1:{server.port}/ws",
                                             "--flows", tmp_path / "flows", "--actions",
                                             tmp_path / "picker_actions.py")
    assert code == 0 and "same" in status_line(out, session_id), out + err
