"""The `chatbot` command line through `main(argv)`: flows check, flows draw, chat."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import chatbot
from chatbot.cli import main
from chatbot.dialogs import BUILTIN_FLOWS

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pizza"
BROKEN = """\
name: pizza
languages: [en]
initial: ask_size
states:
  - name: ask_size
    say: "Which size?"
transitions:
  - trigger: text
    source: ask_size
    dest: ask_sise
entry: {command: /pizza}
"""
MERMAID_LINE = re.compile(r"^(stateDiagram-v2"
                          r"|    (\[\*\]|\w+) --> (\[\*\]|\w+)(: [^:]+)?"
                          r'|    state "[^"]+" as \w+)$')


def run(argv: list[str]) -> int:
    """Run the command line; return its exit code."""
    with pytest.raises(SystemExit) as done:
        main(argv)
    code = done.value.code
    return 0 if code is None else code


@pytest.fixture
def here(tmp_path, monkeypatch):
    """An empty working folder: no data/flows unless a test makes one."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_flows_check_passes_on_the_built_in_flows(here, capsys):
    assert run(["flows", "check"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[1] for line in out.splitlines()] == ["chat", "hub", "login", "registration"]


def test_flows_check_lists_every_problem_and_exits_1(here, capsys):
    folder = here / "data" / "flows"
    folder.mkdir(parents=True)
    (folder / "pizza.yaml").write_text(BROKEN, encoding="utf-8")
    (folder / "drinks.yaml").write_text("name: drinks\nlanguages: [en\n", encoding="utf-8")
    assert run(["flows", "check", "data/flows"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "data/flows/drinks.yaml:3: yaml syntax: expected ',' or ']', but got '<stream end>'",
        "data/flows/pizza.yaml:10: transitions[0].dest: unknown state 'ask_sise' (did you mean 'ask_size'?)",
        "2 problem(s) found",
    ]


def test_flows_check_reads_data_flows_by_default(here, capsys):
    folder = here / "data" / "flows"
    folder.mkdir(parents=True)
    (folder / "pizza.yaml").write_text(BROKEN, encoding="utf-8")
    assert run(["flows", "check"]) == 1
    assert "data/flows/pizza.yaml:10:" in capsys.readouterr().err


def test_flows_check_of_a_folder_without_flows_says_so_and_exits_1(here, capsys):
    (here / "bot" / "flows").mkdir(parents=True)
    (here / "bot" / "flows" / "Pizza.YAML").write_text(BROKEN, encoding="utf-8")
    (here / "bot" / "actions.py").write_text("", encoding="utf-8")
    assert run(["flows", "check", "bot"]) == 1, "the folder above the flows"
    assert capsys.readouterr().err == "bot: no flow files (*.yaml or *.yml) in this folder\n"
    assert run(["flows", "check", "bot/flows"]) == 1
    assert "bot/flows/Pizza.YAML:10: transitions[0].dest: unknown state" in capsys.readouterr().err, \
        "a file named in capitals is a flow file too"


def test_flows_check_with_an_authors_actions_module(here, capsys):
    flows, actions = str(EXAMPLE / "flows"), str(EXAMPLE / "pizza_actions.py")
    assert run(["flows", "check", flows]) == 1
    assert "unknown condition 'size_on_menu'" in capsys.readouterr().err
    assert run(["flows", "check", flows, "--actions", actions]) == 0
    assert "ok  pizza" in capsys.readouterr().out


def test_an_actions_module_is_found_by_its_name_in_the_current_folder(here, capsys, monkeypatch):
    # The installed `chatbot` command does not put the current folder on the path as `python -m` does.
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry not in ("", os.getcwd())])
    shutil.copytree(EXAMPLE, here / "pizzeria")
    (here / "pizzeria" / "__init__.py").write_text("", encoding="utf-8")
    assert run(["flows", "check", str(EXAMPLE / "flows"), "--actions", "pizzeria.pizza_actions"]) == 0
    assert "ok  pizza" in capsys.readouterr().out
    assert sys.path[-1] == str(here), "after the installed packages"


def test_a_missing_actions_file_is_a_config_error(here, capsys):
    assert run(["flows", "check", "--actions", "nowhere.py"]) == 2
    assert capsys.readouterr().err == "error: actions: nowhere.py: no such file\n"


def test_flows_draw_prints_mermaid(here, capsys):
    assert run(["flows", "draw", "login"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["stateDiagram-v2", "    [*] --> ask_username"]
    assert "    ask_password --> success: text [credentials_valid]" in lines
    assert "    success --> goto_chat: goto" in lines
    assert '    state "flow chat" as goto_chat' in lines
    assert [line for line in lines if not MERMAID_LINE.match(line)] == []


def test_flows_draw_of_an_unknown_flow_is_a_usage_error(here, capsys):
    assert run(["flows", "draw", "pizza"]) == 2
    assert "unknown flow 'pizza' (known: chat, hub, login, registration)" in capsys.readouterr().err


def test_flows_draw_writes_mermaid_text_to_a_non_svg_file(here, capsys):
    assert run(["flows", "draw", "hub", "-o", "hub.mmd"]) == 0
    assert (here / "hub.mmd").read_text(encoding="utf-8").startswith("stateDiagram-v2\n")
    assert capsys.readouterr().out == "wrote hub.mmd\n"


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (apt-get install graphviz)")
def test_flows_draw_writes_svg_with_graphviz(here, capsys):
    assert run(["flows", "draw", "registration", "-o", "registration.svg"]) == 0
    svg = (here / "registration.svg").read_text(encoding="utf-8")
    assert "<svg" in svg and svg.rstrip().endswith("</svg>")
    assert "ask_confirm" in svg
    assert "stateDiagram" not in svg


def test_flows_draw_svg_without_graphviz_fails_clearly_and_writes_nothing(here, capsys, monkeypatch):
    empty = here / "no-tools"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert run(["flows", "draw", "login", "-o", "login.svg"]) == 1
    err = capsys.readouterr().err
    assert "cannot write SVG: Graphviz's 'dot' is not installed" in err
    assert not (here / "login.svg").exists()


def chat(monkeypatch, capsys, argv: list[str], lines: list[str]) -> str:
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(line + "\n" for line in lines)))
    assert run(["chat", *argv]) == 0
    return capsys.readouterr().out


def test_chat_debug_register_talk_and_log_out(here, capsys, monkeypatch):
    out = chat(monkeypatch, capsys, ["--debug"], [
        "#2",  # the Register button
        "ann", "correct horse", "correct horse",
        "who am i",
        "/logout",
    ])
    assert "you> ••••••" in out, "a password typed into a pipe is not echoed"
    assert "correct horse" not in out
    assert "bot> Your account is ready, ann. You are logged in." in out
    assert "  · registration: ask_confirm --text--> done" in out
    assert "bot> You are logged in as ann." in out
    assert "  · chat: listening --whoami--> listening intent=whoami score=100.0" in out
    assert "bot> You are logged out. Bye!" in out  # typed, /logout is the chat's own logout button
    assert out.rstrip().endswith("  · state=hub:welcome user=None lang=en slots={}\nyou>")


def test_chat_in_russian_with_the_example_bot(here, capsys, monkeypatch):
    out = chat(monkeypatch, capsys, ["--lang", "ru", "--flows", str(EXAMPLE / "flows"),
                                     "--actions", str(EXAMPLE / "pizza_actions.py")], [
        "регистрация", "аня", "пароль-пароль", "пароль-пароль",
        "/pizza", "большую", "2", "аня@пример.рф", "#1",
    ])
    assert "bot> 2 × большую, всего 24 €, чек на аня@пример.рф. Заказываем?" in out
    assert re.search(r"bot> (Заказ P-\d{5} уже в печи\. Приятного аппетита, аня!|Готово: заказ P-\d{5}\.)", out)


def test_chat_takes_odd_input_in_its_stride(here, capsys, monkeypatch):
    lines = "#²\r\n" + "x" * 5000 + "\r\n" + "bad \udcff byte\r\n" + "#2\r\nann\r\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines.encode("utf-8", "surrogateescape")),
                                                       encoding="utf-8"))
    assert run(["chat"]) == 0
    out = capsys.readouterr().out
    assert "bot> Choose a username" in out, "#2 with a Windows line end still presses Register"
    assert "error: text: 5000 characters, the limit is 4000" in out
    assert "bad \ufffd byte" in out, "a byte that is not UTF-8 is replaced, not fatal"


def test_chat_with_its_input_closed_greets_and_ends(here):
    done = subprocess.run([sys.executable, "-m", "chatbot", "chat"], capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: os.close(0))  # as a shell's `<&-` starts it
    assert (done.returncode, done.stderr) == (0, "")
    assert "Log in" in done.stdout


def failing_bot(here: Path, raised: str) -> Path:
    """An actions module whose action `boom` raises `raised`, and an empty flows folder; return the folder."""
    (here / "boom.py").write_text(
        "from chatbot.dialogs import action\n\n"
        f"@action()\ndef boom(ctx):\n    raise {raised}\n", encoding="utf-8")
    flows = here / "flows"
    flows.mkdir()
    return flows


def test_chat_says_so_when_an_action_fails_and_goes_on(here, capsys, monkeypatch):
    flows = failing_bot(here, "RuntimeError('out of dough')")
    (flows / "boom.yaml").write_text(
        "name: boom\nlanguages: [en]\ninitial: go\nentry: {command: /boom, access: anyone}\n"
        "states:\n  - name: go\n    say: Ready.\n    capture: {slot: what}\n"
        "transitions:\n  - {trigger: text, source: go, dest: go, after: boom}\n", encoding="utf-8")
    out = chat(monkeypatch, capsys, ["--flows", str(flows), "--actions", str(here / "boom.py")],
               ["/boom", "anything", "/help"])
    assert "error: the bot failed on that message (RuntimeError: out of dough); it was not processed" in out
    assert out.count("bot> ") >= 2, "the conversation went on"


def test_chat_says_so_when_the_greeting_fails_and_exits_1(here, capsys, monkeypatch):
    flows = failing_bot(here, "ValueError('kaboom')")
    hub = (BUILTIN_FLOWS / "hub.yaml").read_text(encoding="utf-8")
    assert hub.count("  - name: welcome\n") == 1
    (flows / "hub.yaml").write_text(hub.replace("  - name: welcome\n", "  - name: welcome\n    on_enter: boom\n"),
                                    encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n"))
    assert run(["chat", "--flows", str(flows), "--actions", str(here / "boom.py")]) == 1
    assert capsys.readouterr().out == "error: the bot failed to greet (ValueError: kaboom)\n"


def test_chat_in_a_language_the_flows_do_not_have_is_refused(here, capsys):
    assert run(["chat", "--lang", "zz"]) == 2
    assert capsys.readouterr().err.strip() == "error: --lang: unknown language 'zz' (known: en, ru)"


def test_serve_refuses_to_start_on_an_invalid_flow_with_the_same_messages(here, capsys):
    folder = here / "data" / "flows"
    folder.mkdir(parents=True)
    (folder / "pizza.yaml").write_text(BROKEN, encoding="utf-8")
    assert run(["serve", "--port", "0", "--log-format", "none"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "data/flows/pizza.yaml:10: transitions[0].dest: unknown state 'ask_sise' (did you mean 'ask_size'?)",
        "1 problem(s) found",
    ]
    assert not (here / "data" / "chatbot.db").exists(), "nothing was started"


def test_serve_takes_every_module_of_a_repeated_actions_option(here, capsys):
    import socket

    (here / "first.py").write_text("from chatbot.dialogs import action\n\n@action\ndef one(ctx):\n    pass\n",
                                   encoding="utf-8")
    (here / "second.py").write_text("from chatbot.dialogs import action\n\n@action\ndef two(ctx):\n    pass\n",
                                    encoding="utf-8")
    folder = here / "data" / "flows"
    folder.mkdir(parents=True)
    (folder / "both.yaml").write_text(
        "name: both\nlanguages: [en]\ninitial: go\nentry: {command: /both}\n"
        "states:\n  - name: go\n    on_enter: [one, two]\n    say: Done.\n    goto: chat\n", encoding="utf-8")
    with socket.socket() as taken:  # the flows load, then the port stops the start
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run(["serve", "--port", str(port), "--log-format", "none",
                    "--actions", "first.py", "--actions", "second.py"]) == 2
    assert "cannot listen" in capsys.readouterr().err


def test_serve_reports_a_bad_setting_with_its_source_and_exit_2(here, capsys, monkeypatch):
    monkeypatch.setenv("CHATBOT_PORT", "eighty")
    assert run(["serve"]) == 2
    assert capsys.readouterr().err.strip() == "error: CHATBOT_PORT: port: expected int, got 'eighty'"


@pytest.mark.parametrize("name", ["hub.mmd", pytest.param("hub.svg", marks=pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz's dot is not installed (apt-get install graphviz)"))])
def test_flows_draw_into_a_missing_folder_is_a_clear_error(here, capsys, name):
    assert run(["flows", "draw", "hub", "-o", f"missing/{name}"]) == 1
    assert capsys.readouterr().err == "error: flows draw: missing: no such folder\n"


def test_the_first_example_in_the_docs_passes_flows_check(here, capsys):
    doc = (Path(__file__).resolve().parent.parent / "docs" / "flows.md").read_text(encoding="utf-8")
    example = re.search(r"## A first look\n\n```yaml\n(.*?)```", doc, re.DOTALL).group(1)
    (here / "flows").mkdir()
    (here / "flows" / "greeter.yaml").write_text(example, encoding="utf-8")
    assert run(["flows", "check", "flows"]) == 0
    assert "ok  greeter" in capsys.readouterr().out


@pytest.mark.parametrize(("url", "message"), [
    ("postgresql://127.0.0.1:99999/test",
     "db: database url 'postgresql://127.0.0.1:99999/test' has an invalid port (expected a number from 0 to 65535)"),
    ("postgresql://127.0.0.1:abc/test",
     "db: database url 'postgresql://127.0.0.1:abc/test' has an invalid port (expected a number from 0 to 65535)"),
    ("postgresql://u:pw@[::1/test", "db: database url 'postgresql://u:***@[::1/test' cannot be parsed: invalid IPv6 URL"),
    ("postgresql://127.0.0.1/test?timeout=5",
     "db: postgresql url 'postgresql://127.0.0.1/test?timeout=5': invalid connection option \"timeout\""),
    ("postgresql://127.0.0.1/test?dbname=other",
     "db: postgresql url 'postgresql://127.0.0.1/test?dbname=other' names its database in a query parameter "
     "(it goes in the path: postgresql://USER@HOST:PORT/DB)"),
    ("postgresql://127.0.0.1/test?password=Hunter2&timeout=5",  # libpq's password option is hidden too
     "db: postgresql url 'postgresql://127.0.0.1/test?password=***&timeout=5': invalid connection option \"timeout\""),
    ("sqlite:///data/x/", "db: sqlite url 'sqlite:///data/x/' names a folder, not a file "
                          "(e.g. sqlite:///data/x/chatbot.db)"),
    ("sqlite:///data/x.db?timeout=5", "db: sqlite url 'sqlite:///data/x.db?timeout=5' takes no query parameters, "
                                      "got 'timeout=5' (the server sets the connection options itself)"),
    ("sqlite:///data/x.db?foo=1", "db: sqlite url 'sqlite:///data/x.db?foo=1' takes no query parameters, "
                                  "got 'foo=1' (the server sets the connection options itself)"),
])
def test_serve_reports_an_unusable_database_url_before_starting(here, capsys, url, message):
    assert run(["serve", "--port", "0", "--log-format", "none", "--db", url]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not (here / "data").exists(), "nothing was started"


def test_serve_with_workers_on_an_upper_case_sqlite_url_is_refused(here, capsys, monkeypatch):
    # Were the URL let through, workers would be forked from this very process.
    monkeypatch.setattr("chatbot.supervisor.supervise", lambda *args, **kwargs: pytest.fail("workers started"))
    assert run(["serve", "--workers", "2", "--port", "0", "--db", "SQLITE:///data/x.db"]) == 2
    assert "error: workers: more than one worker needs a shared database" in capsys.readouterr().err


def test_serve_with_workers_and_a_log_folder_it_cannot_write_stops_at_once(here, capsys, monkeypatch, postgres_url):
    monkeypatch.setattr("chatbot.supervisor.supervise", lambda *args, **kwargs: pytest.fail("workers started"))
    (here / "taken").write_text("a file where the log folder should be")
    assert run(["serve", "--workers", "2", "--port", "0", "--db", postgres_url, "--log-dir", "taken/logs"]) == 2
    assert capsys.readouterr().err.startswith("error: logging: cannot write taken/logs/chatbot.log: ")


def test_serve_without_the_postgresql_driver_says_how_to_install_it(here, capsys, monkeypatch):
    import configparser

    monkeypatch.setitem(sys.modules, "psycopg2", None)
    monkeypatch.setitem(sys.modules, "psycopg2.extensions", None)
    assert run(["serve", "--port", "0", "--log-format", "none", "--db", "postgresql://127.0.0.1/test"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: db: postgresql needs the psycopg2 driver, which is not installed: "
                   "pip install -e '.[postgres]' in the project's folder (or pip install psycopg2-binary)\n")
    setup = configparser.ConfigParser()
    setup.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    assert "psycopg2" in setup["options.extras_require"]["postgres"], "the extra the message names"


@pytest.mark.parametrize("config", [None, 'host = {a = 1}\n'])
def test_serve_on_a_host_that_cannot_be_used_is_a_message(here, capsys, config):
    if config is None:
        argv = ["--host", "nosuchhost.invalid"]
        expected = "error: serve: cannot listen on nosuchhost.invalid:0: "
    else:
        (here / "c.toml").write_text(config)
        argv = ["--config", "c.toml"]
        expected = "error: c.toml: host: expected str, got {'a': 1}\n"
    assert run(["serve", "--port", "0", "--log-format", "none", *argv]) == 2
    assert capsys.readouterr().err.startswith(expected)
    assert not (here / "data" / "chatbot.db").exists(), "nothing was started"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_chat_ended_by_a_signal_leaves_no_accounts_behind(tmp_path, signum):
    chat = subprocess.Popen([sys.executable, "-m", "chatbot", "chat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        for line in ("/register", "alice", "secret pass 1", "secret pass 1"):
            chat.stdin.write(line + "\n")
        chat.stdin.flush()
        seen = ""
        while "Your account is ready, alice." not in seen:
            line = chat.stdout.readline()
            assert line, seen
            seen += line
        assert list(tmp_path.glob("chatbot-chat-*/accounts.db")), "the account is stored meanwhile"
        chat.send_signal(signum)
        assert chat.wait(20) in (0, 1)  # 0 at the prompt, 1 (click's "Aborted!") in the middle of a turn
    finally:
        chat.kill()
        chat.wait()
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def one_connection_url(postgres_url):
    """A database URL whose role may hold one connection: a node needs its store's and a LISTEN one."""
    import uuid

    import psycopg2

    from tests.conftest import POSTGRES_DSN

    admin = psycopg2.connect(POSTGRES_DSN)
    admin.autocommit = True
    role = f"one_{uuid.uuid4().hex[:10]}"
    params = dict(part.split("=", 1) for part in POSTGRES_DSN.split())
    admin.cursor().execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 1")
    admin.cursor().execute(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
    try:
        yield (f"postgresql://{role}@{params['host']}:{params['port']}/{params['dbname']}"
               f"?options=-c%20search_path%3D{role}")
    finally:
        admin.cursor().execute(f"DROP SCHEMA {role} CASCADE")
        admin.cursor().execute(f"DROP ROLE {role}")
        admin.close()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_database_that_refuses_the_listen_connection_says_so_once(here, capsys, monkeypatch,
                                                                             one_connection_url, workers):
    monkeypatch.setattr("chatbot.supervisor.supervise", lambda *args, **kwargs: pytest.fail("workers started"))
    assert run(["serve", "--port", "0", "--log-format", "none", "--workers", workers,
                "--db", one_connection_url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: storage: cannot open the connection that listens for other nodes' turns: ")
    assert "too many connections for role" in err and "Traceback" not in err


def test_ctrl_c_while_the_server_is_starting_stops_it_without_a_traceback(tmp_path):
    # The installed command, as a person runs it, interrupted at moments while it loads and starts.
    # Python may swallow a KeyboardInterrupt raised inside an import, which left the server
    # running, deaf to the Ctrl-C that should have stopped it.
    command = [str(Path(sys.executable).parent / "chatbot"), "serve", "--port", "0",
               "--data-dir", str(tmp_path), "--log-format", "none"]
    for _ in range(3):
        for delay in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3):
            server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                                      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
            time.sleep(delay)
            server.send_signal(signal.SIGINT)
            try:
                _, err = server.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                raise AssertionError(f"still running 20 s after a Ctrl-C at {delay} s: {server.communicate()[1]}")
            # Python's own start-up, up to the entry module's first lines, is beyond its reach.
            entry = tuple(f'File "{Path(chatbot.__file__).parent / name}"' for name in ("__init__.py", "__main__.py"))
            frames = [line for line in err.splitlines()
                      if f"{os.sep}chatbot{os.sep}" in line and not line.strip().startswith(entry)]
            assert not frames, f"after {delay} s: {err}"
            # Stopped: Python's default (the signal), aborted while loading, or stopped once started.
            assert server.returncode in (-signal.SIGINT, 0, 1), (delay, server.returncode, err)
