"""`chatbot serve` as a process: SIGKILL in mid-conversation loses nothing acknowledged; SIGTERM is graceful."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import pytest
from tornado.httpclient import HTTPClientError
from tornado.websocket import WebSocketError

from tests.process_helpers import ServerProcess, TcpProxy
from tests.server_helpers import Client, replies


@pytest.mark.gen_test(timeout=120)
async def test_sigkill_mid_conversation_loses_nothing_acknowledged(tmp_path):
    server = ServerProcess(tmp_path, "--rate-burst", "1000")
    port = server.start()
    try:
        client = await Client.connect(port)
        welcome = await client.hello()
        await client.recv()
        register_id = (await client.press("register"))[-1]["id"]
        await client.say("dana")
        await client.say("dana's password")
        frames = await client.say("dana's password")
        token = next(f for f in frames if f["type"] == "auth")["resume"]
        acked: dict[str, int] = {}
        for round_ in range(5):
            frames = await client.say(f"call me Dee{round_}")
            acked[frames[-1]["id"]] = frames[-1]["seq"]
        # Fire a burst without waiting and kill the server while it is answering.
        burst = [f"burst-{i}" for i in range(200)]
        for message_id in burst:
            await client.send({"type": "message", "id": message_id, "text": "tell me a joke"})
        await client.recv_until("ack", id="burst-5")
        server.kill()
        while await client.recv(timeout=10) is not None:
            pass
        acked.update((f["id"], f["seq"]) for f in client.frames if f["type"] == "ack")
        last_reply = max(f["seq"] for f in client.frames if f["type"] == "reply")
    finally:
        if server.proc.poll() is None:
            server.kill()
    assert welcome["resumed"] is False
    assert "burst-5" in acked and "burst-199" not in acked, "the kill must land in the middle of the burst"

    port = server.start()
    try:
        back = await Client.connect(port)
        resumed = await back.hello(resume=token, history=500)
        assert resumed["resumed"] is True and resumed["user"] == "dana"
        history = await back.recv()
        stored = {e.get("id"): e["seq"] for e in history["entries"] if e["from"] == "user"}
        for message_id, seq in acked.items():
            if message_id != register_id:  # an action is no entry of its own
                assert stored.get(message_id) == seq, f"acknowledged {message_id} was lost"
        for message_id, seq in acked.items():
            await back.send({"type": "action", "id": message_id, "name": "register"})
            again = await back.recv_until("ack", id=message_id)
            assert again == [{"type": "ack", "id": message_id, "seq": seq}], "an acknowledged id was run again"
        assert resumed["last_seq"] >= last_reply, "a reply the user saw was lost"
        # Resending every unacknowledged message processes each exactly once.
        for message_id in burst:
            frames = await back.say("tell me a joke", id=message_id)
            assert frames[-1]["type"] == "ack"
        frames = await back.say("what is my name")
        assert replies(frames) == ["You asked me to call you Dee4."]
        await back.send({"type": "history", "limit": 500})
        entries = (await back.recv_until("history"))[-1]["entries"]
        ids = [e.get("id") for e in entries if e["from"] == "user"]
        assert len(ids) == len(set(ids)), "a message was processed twice"
    finally:
        server.terminate()


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("signum", [15, 1], ids=["SIGTERM", "SIGHUP"])
async def test_sigterm_closes_sockets_with_1001_and_exits_0(tmp_path, signum):
    server = ServerProcess(tmp_path)
    port = server.start()
    client = await Client.connect(port)
    await client.hello()
    await client.recv()
    started = time.monotonic()
    server.proc.send_signal(signum)
    assert await client.recv(timeout=10) is None
    assert client.conn.close_code == 1001
    assert server.proc.wait(10) == 0
    assert time.monotonic() - started < 10
    assert "stopping" in server.rest_of_stderr()


@pytest.mark.parametrize("extra", [[], ["--workers", "2", "--db", "postgresql://127.0.0.1:5432/test"]],
                         ids=["one process", "workers"])
def test_a_port_in_use_is_a_message_not_a_traceback(tmp_path, extra):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "chatbot", "serve", "--port", str(port), "--data-dir",
                               str(tmp_path), "--log-format", "none", *extra],
                              capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (2, f"error: serve: cannot listen on 127.0.0.1:{port}: "
                                                 "address already in use\n")
    assert not (tmp_path / "chatbot.db").exists(), "no database is created for a server that cannot listen"


@pytest.mark.gen_test(timeout=120)
async def test_an_upper_case_postgresql_scheme_still_shares_sessions_between_nodes(tmp_path, postgres_url):
    url = "POSTGRESQL" + postgres_url[len("postgresql"):]
    nodes = [ServerProcess(tmp_path / f"node{index}", "--db", url) for index in range(2)]
    try:
        ports = [node.start() for node in nodes]
        first = await Client.connect(ports[0])
        welcome = await first.hello()
        await first.recv()
        second = await Client.connect(ports[1])
        await second.hello(resume=welcome["resume"])
        frames = await first.say("hello")
        seen = await second.recv_until("reply", seq=frames[-2]["seq"])
        assert seen[-1]["text"] == replies(frames)[-1], "the other node relays the turn to its tab"
    finally:
        for node in nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.terminate()


def logged_events(data_dir, event: str) -> list[dict]:
    import json

    lines = (data_dir / "logs" / "chatbot.log").read_text(encoding="utf-8").splitlines()
    return [record for record in map(json.loads, lines) if record.get("event") == event]


async def welcomed_once_a_place_is_free(port: int, within: float = 10.0) -> tuple[Client, dict]:
    """A client and its welcome, saying hello on new connections until the server admits one.

    A place frees only once the server has handled the close of a connection that held it,
    which takes a while on a loaded machine; until then each new connection is turned away
    (closed at once, or told 1013).
    """
    deadline = time.monotonic() + within
    turned_away = []
    while time.monotonic() < deadline:
        client = None
        try:
            client = await asyncio.wait_for(Client.connect(port), deadline - time.monotonic())
            await client.send({"type": "hello"})
            while (frame := await client.recv(timeout=max(deadline - time.monotonic(), 0.01))) is not None:
                if frame["type"] == "welcome":
                    return client, frame
            turned_away.append(client.conn.close_code)
        except (OSError, HTTPClientError, WebSocketError, asyncio.TimeoutError) as error:
            turned_away.append(repr(error))
        if client is not None:
            client.close()
        await asyncio.sleep(0.05)
    ways = ", ".join(f"{count} × {way}" for way, count in Counter(turned_away).items())
    raise AssertionError(f"no connection was admitted in {within} s; turned away: {ways}")


@pytest.mark.gen_test(timeout=60)
async def test_connections_that_never_speak_cannot_use_up_the_descriptors(tmp_path):
    server = ServerProcess(tmp_path, open_files=120)  # room for 120 - 64 sockets
    port = server.start()
    squatters = []
    try:
        for _ in range(160):  # each holds a descriptor until the header timeout
            squatter = socket.socket()
            squatter.settimeout(1)
            try:
                squatter.connect(("127.0.0.1", port))
            except OSError:
                squatter.close()
                continue
            squatters.append(squatter)
        await asyncio.sleep(1.0)
        before = server.cpu_seconds()
        await asyncio.sleep(2.0)
        spent = server.cpu_seconds() - before
        assert spent < 0.5, f"the server spent {spent:.2f} s of CPU in 2 s while full"
        for squatter in squatters:
            squatter.close()
        squatters.clear()
        client, welcome = await welcomed_once_a_place_is_free(port)
        assert welcome["resumed"] is False
        assert server.terminate() == 0
        full = logged_events(tmp_path, "server.full")
        assert [event["reason"] for event in full] == ["the open-files limit leaves room for 56 sockets"]
        assert "Too many open files" not in server.rest_of_stderr()
    finally:
        for squatter in squatters:
            squatter.close()
        if server.proc.poll() is None:
            server.kill()


@pytest.mark.gen_test(timeout=60)
async def test_connections_past_what_the_open_files_limit_allows_are_refused_with_1013(tmp_path):
    server = ServerProcess(tmp_path, open_files=100)  # room for 100 - 64 sockets, 16 of them for handshakes
    port = server.start()
    try:
        clients = [await Client.connect(port) for _ in range(20)]
        for client in clients:
            await client.hello()
        refused = await Client.connect(port)
        assert await refused.recv() is None and refused.conn.close_code == 1013
        clients[0].close()
        admitted, welcome = await welcomed_once_a_place_is_free(port)
        assert welcome["type"] == "welcome"
        assert server.terminate() == 0
        capped = logged_events(tmp_path, "server.connections_capped")
        assert [(event["wanted"], event["allowed"]) for event in capped] == [(20000, 20)]
    finally:
        if server.proc.poll() is None:
            server.kill()


@pytest.mark.gen_test(timeout=60)
async def test_an_action_calling_sys_exit_fails_its_turn_and_the_server_serves_on(tmp_path):
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "leave.yaml").write_text(
        "name: leave\nlanguages: [en]\ninitial: ask\nentry: {command: /leave, access: anyone}\n"
        "states:\n  - name: ask\n    say: 'Sure?'\n    buttons: [{label: Leave, action: go}]\n"
        "  - name: gone\n    say: 'Gone.'\n    goto: hub\n"
        "transitions:\n  - {trigger: go, source: ask, dest: gone, before: leave}\n", encoding="utf-8")
    (tmp_path / "leaving.py").write_text(
        "import sys\nfrom chatbot.dialogs import action\n\n\n@action\ndef leave(ctx):\n    sys.exit(3)\n",
        encoding="utf-8")
    server = ServerProcess(tmp_path / "data", "--flows", str(tmp_path / "flows"),
                           "--actions", str(tmp_path / "leaving.py"))
    port = server.start()
    try:
        client = await Client.connect(port)
        await client.hello()
        await client.recv()
        assert replies(await client.say("/leave")) == ["Sure?"]
        await client.send({"type": "action", "id": "exit", "name": "go"})
        failed = (await client.recv_until("error", timeout=10))[-1]
        assert (failed["code"], failed["in_reply_to"]) == ("internal_error", "exit")
        assert replies(await client.say("/help")), "the server still answers"
        assert server.proc.poll() is None
    finally:
        server.terminate()
    log = (tmp_path / "data" / "logs" / "chatbot.log").read_text(encoding="utf-8")
    assert "action 'leave' raised SystemExit(3), which would end the program" in log


async def _health(port: int) -> tuple[int, str]:
    from tornado.httpclient import AsyncHTTPClient

    response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/healthz", raise_error=False)
    return response.code, json.loads(response.body)["database"]


@pytest.mark.gen_test(timeout=120)
async def test_a_database_that_stops_answering_makes_the_node_unhealthy_and_does_not_hold_up_its_stop(
        tmp_path, postgres_url):
    parts = urlsplit(postgres_url)
    proxy = TcpProxy(parts.port, parts.hostname)
    try:
        url = parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
        server = ServerProcess(tmp_path, "--db", url, "--shutdown-timeout", "2")
        port = server.start()
        try:
            client = await Client.connect(port)
            await client.hello()
            await client.recv()
            assert replies(await client.say("hello"))
            assert await _health(port) == (200, "ok")
            proxy.hang()  # the database answers nothing more, on the connections open and on new ones
            proxy.freeze()
            await client.send({"type": "message", "id": "held", "text": "tell me a joke"})
            deadline = time.monotonic() + 30  # the writer's transaction is stuck after 10 s
            while await _health(port) != (503, "stuck") and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            assert await _health(port) == (503, "stuck"), "a load balancer sends users elsewhere"
            stopping = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            assert server.proc.wait(30) == 1
            # Its shutdown timeout, the sockets' 2 s and a second for the store: not the database's time.
            assert time.monotonic() - stopping < 2 + 2 + 2 + 3
            assert not [f for f in client.frames if f.get("id") == "held"], "nothing was acknowledged"
        finally:
            if server.proc.poll() is None:
                server.kill()
    finally:
        proxy.close()
    assert "error: storage: the database stopped answering" in server.rest_of_stderr()


def test_a_database_that_accepts_and_never_answers_fails_the_start_in_seconds(tmp_path):
    silent = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; no one ever answers
    try:
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "chatbot", "serve", "--port", "0", "--data-dir", str(tmp_path),
                               "--db", f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/test"],
                              capture_output=True, text=True, timeout=60)
    finally:
        silent.close()
    assert done.returncode == 1
    assert time.monotonic() - started < 25
    assert done.stderr.startswith("error: storage: cannot open 'postgresql://postgres@127.0.0.1:")
    assert "timeout expired" in done.stderr
