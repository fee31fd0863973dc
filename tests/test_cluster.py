"""Several server processes on one PostgreSQL: sessions move freely between them."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError

from tests.process_helpers import ServerProcess
from tests.server_helpers import Client, new_token, register, replies

PASSWORD = "shared secret 123"


@pytest.fixture
def nodes(tmp_path, postgres_url):
    started = []
    for index in range(3):
        node = ServerProcess(tmp_path / f"node{index}", "--db", postgres_url, "--rate-burst", "500")
        node.start()
        started.append(node)
    yield started
    for node in started:
        if node.proc.poll() is None:
            node.terminate()


@pytest.mark.gen_test(timeout=120)
async def test_register_on_one_node_resume_on_another_chat_on_a_third(nodes):
    first = await Client.connect(nodes[0].port)
    await first.hello()
    await first.recv()
    token = new_token(await register(first, "nina", PASSWORD))
    await first.say("call me Nini")
    last_seq = first.frames[-2]["seq"]
    first.close()

    second = await Client.connect(nodes[1].port)
    welcome = await second.hello(resume=token, last_seq=last_seq)
    assert (welcome["resumed"], welcome["user"], welcome["last_seq"]) == (True, "nina", last_seq)
    assert replies(await second.say("what is my name")) == ["You asked me to call you Nini."]
    second.close()

    third = await Client.connect(nodes[2].port)
    welcome = await third.hello(resume=token, last_seq=last_seq)
    resent = [await third.recv(), await third.recv()]  # what the second tab typed, and the reply
    assert [(f["type"], f["text"]) for f in resent] == [("user", "what is my name"),
                                                        ("reply", "You asked me to call you Nini.")]
    frames = await third.say("who am i")
    assert replies(frames) == ["You are logged in as nina, and I call you Nini."]
    assert frames[0]["seq"] == last_seq + 4


@pytest.mark.gen_test(timeout=120)
async def test_two_tabs_on_two_nodes_both_see_every_reply_and_auth_change(nodes):
    first = await Client.connect(nodes[0].port)
    welcome = await first.hello()
    await first.recv()
    second = await Client.connect(nodes[1].port)
    await second.hello(resume=welcome["resume"])

    frames = await first.say("hello")
    seen = await second.recv_until("reply", seq=frames[-2]["seq"])
    assert seen[0]["type"] == "user" and seen[0]["text"] == "hello"
    assert seen[-1]["text"] == replies(frames)[-1]

    frames = await second.press("register")
    assert (await first.recv_until("reply", seq=frames[-2]["seq"]))[-1]["text"] == replies(frames)[-1]
    await second.say("olga")
    await second.say(PASSWORD)
    frames = await second.say(PASSWORD)
    auth = next(f for f in frames if f["type"] == "auth")
    relayed = await first.recv_until("auth")
    assert relayed[-1] == auth, "the other node's tab learns the new user and token"
    rest = await first.recv_until("reply", seq=frames[-2]["seq"])
    assert replies(rest) == replies(frames), "the auth comes before the turn's replies, as on its own node"
    secret = [f for f in relayed if f["type"] == "user" and f.get("secret")]
    assert secret and all(f["text"] == "••••••" for f in secret)
    assert PASSWORD not in repr(first.frames)


@pytest.mark.gen_test(timeout=120)
async def test_concurrent_messages_from_two_nodes_are_processed_once_each_in_one_order(nodes):
    first = await Client.connect(nodes[0].port)
    welcome = await first.hello()
    await first.recv()
    second = await Client.connect(nodes[1].port)
    await second.hello(resume=welcome["resume"])
    sent = {first: [f"n0-{i}" for i in range(20)], second: [f"n1-{i}" for i in range(20)]}
    for i in range(20):
        for client, ids in sent.items():
            await client.send({"type": "message", "id": ids[i], "text": "hi"})
    for client, ids in sent.items():
        await client.recv_until("ack", timeout=60, id=ids[-1])
    checker = await Client.connect(nodes[2].port)
    await checker.hello(resume=welcome["resume"])
    await checker.send({"type": "history", "limit": 500})
    entries = (await checker.recv_until("history"))[-1]["entries"]
    users = [e for e in entries if e["from"] == "user"]
    assert not [f for client in sent for f in client.frames if f["type"] == "error"]
    assert sorted(e["id"] for e in users) == sorted(sent[first] + sent[second]), "each processed exactly once"
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    for user in users:
        reply = next(e for e in entries if e["seq"] == user["seq"] + 1)
        assert reply["from"] == "bot" and reply["in_reply_to"] == user["id"]
    for client in sent:  # each tab saw the whole conversation, in order, once
        while max(f.get("seq", 0) for f in client.frames if f["type"] != "welcome") < entries[-1]["seq"]:
            await client.recv(timeout=10)
        seen = [f["seq"] for f in client.frames if f["type"] in ("reply", "user") and f["seq"] > 1]
        own = {f["seq"] for f in client.frames if f["type"] == "ack"}
        assert sorted(set(seen) | own) == [e["seq"] for e in entries][1:]
        assert seen == sorted(seen) and len(seen) == len(set(seen))


@pytest.mark.gen_test(timeout=120)
async def test_workers_share_one_port_and_stop_together(tmp_path, postgres_url):
    import json

    from tornado.httpclient import AsyncHTTPClient

    server = ServerProcess(tmp_path, "--workers", "2", "--db", postgres_url)
    port = server.start()
    try:
        clients = [await Client.connect(port) for _ in range(24)]
        for client in clients:
            await client.hello()
        http = AsyncHTTPClient(force_instance=True)
        pids = set()
        for _ in range(40):
            response = await http.fetch(f"http://127.0.0.1:{port}/healthz", headers={"Connection": "close"})
            pids.add(json.loads(response.body)["pid"])
        assert len(pids) == 2, "both workers answer on the shared port"
        assert server.terminate(timeout=15) == 0
        for client in clients:
            while await client.recv(timeout=5) is not None:
                pass
            assert client.conn.close_code == 1001
    finally:
        if server.proc.poll() is None:
            server.kill()


def scraped(body: bytes) -> dict[str, float]:
    """The samples of a /metrics text: name with labels → value."""
    samples = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


@pytest.mark.gen_test(timeout=120)
async def test_every_worker_s_metrics_count_what_all_the_workers_did(tmp_path, postgres_url):
    import json
    import os
    import signal

    from tornado.httpclient import AsyncHTTPClient

    server = ServerProcess(tmp_path, "--workers", "2", "--db", postgres_url)
    port = server.start()
    http = AsyncHTTPClient(force_instance=True)

    async def scrape(times: int = 20) -> list[dict[str, float]]:
        # A new connection each time: the shared port hands each to either worker.
        return [scraped((await http.fetch(f"http://127.0.0.1:{port}/metrics", headers={"Connection": "close"})).body)
                for _ in range(times)]

    try:
        clients = [await Client.connect(port) for _ in range(24)]
        for client in clients:
            await client.hello()
            await client.recv_until("reply")
            await client.say("what can you do")
        for samples in await scrape():
            assert samples["chatbot_connections_open"] == 24
            assert samples["chatbot_sessions_live"] == 24
            assert samples['chatbot_messages_in_total{kind="message"}'] == 24
            assert samples["chatbot_reply_latency_seconds_count"] == 24

        # A worker killed: its connections no longer count, what it did still does.
        pids = set()
        while len(pids) < 2:
            response = await http.fetch(f"http://127.0.0.1:{port}/healthz", headers={"Connection": "close"})
            pids.add(json.loads(response.body)["pid"])
        os.kill(pids.pop(), signal.SIGKILL)
        left = []
        for client in clients:
            try:
                await client.send({"type": "ping"})
                if (await client.recv()) is not None:
                    left.append(client)
            except (WebSocketClosedError, StreamClosedError):
                pass
        assert 0 < len(left) < 24, "each worker had some of the connections"
        # The supervisor learns of the death a moment after the connections do.
        deadline = time.monotonic() + 10
        while (await scrape(1))[0]["chatbot_connections_open"] != len(left):
            assert time.monotonic() < deadline, "the killed worker's connections still count"
            await asyncio.sleep(0.05)
        for samples in await scrape():
            assert samples["chatbot_connections_open"] == len(left)
            assert samples['chatbot_messages_in_total{kind="message"}'] == 24
    finally:
        if server.proc.poll() is None:
            server.terminate()


def test_more_than_one_worker_on_sqlite_is_refused(tmp_path, capsys):
    from chatbot.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--workers", "2", "--data-dir", str(tmp_path)])
    assert exit_.value.code == 2
    assert "use --db postgresql://" in capsys.readouterr().err


def nginx_in_front(tmp_path, listen: int, ports: list[int]) -> subprocess.Popen:
    """Run deploy/nginx.conf, the shipped configuration, with only its ports rewritten."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx is not installed (apt-get install nginx; .ci/run does)")
    config = (Path(__file__).parent.parent / "deploy" / "nginx.conf").read_text()
    upstreams = re.findall(r"server 127\.0\.0\.1:\d+ ", config)
    assert len(upstreams) == len(ports)
    for line, port in zip(upstreams, ports):
        config = config.replace(line, f"server 127.0.0.1:{port} ", 1)
    config = config.replace("listen 8080;", f"listen 127.0.0.1:{listen};")
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    (prefix / "nginx.conf").write_text(config)
    proc = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g",
                             f"daemon off; pid {prefix}/nginx.pid; error_log {prefix}/logs/error.log;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", listen)) == 0:
                return proc
        if proc.poll() is not None:
            raise RuntimeError(f"nginx failed: {proc.stderr.read().decode()}")
        time.sleep(0.05)
    raise RuntimeError("nginx did not start listening")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.gen_test(timeout=120)
async def test_a_conversation_through_nginx_survives_the_sigkill_of_its_node(tmp_path, nodes):
    import json

    from tornado.httpclient import AsyncHTTPClient

    listen = free_port()
    proxy = nginx_in_front(tmp_path, listen, [node.port for node in nodes])
    try:
        client = await Client.connect(listen, origin=f"http://127.0.0.1:{listen}")
        await client.hello()
        await client.recv()
        token = new_token(await register(client, "rita", PASSWORD))
        await client.say("call me Ri")
        http = AsyncHTTPClient(force_instance=True)
        counts = [json.loads((await http.fetch(f"http://127.0.0.1:{n.port}/healthz")).body)["connections"]
                  for n in nodes]
        assert sorted(counts) == [0, 0, 1]
        victim = nodes[counts.index(1)]
        acked_seq = client.frames[-1]["seq"]
        last_reply = client.frames[-2]["seq"]
        victim.kill()
        assert await client.recv(timeout=10) is None, "the client notices the node is gone"

        back = await Client.connect(listen, origin=f"http://127.0.0.1:{listen}")
        welcome = await back.hello(resume=token, last_seq=last_reply)
        assert (welcome["resumed"], welcome["user"]) == (True, "rita")
        assert welcome["last_seq"] == last_reply and acked_seq < last_reply
        assert replies(await back.say("what is my name")) == ["You asked me to call you Ri."]
        survivors = [n for n in nodes if n is not victim]
        counts = [json.loads((await http.fetch(f"http://127.0.0.1:{n.port}/healthz")).body)["connections"]
                  for n in survivors]
        assert sum(counts) == 1, "the conversation continued on a surviving node"
        for private in ("metrics", "healthz"):  # for Prometheus and the balancer, not the internet
            answer = await http.fetch(f"http://127.0.0.1:{listen}/{private}", raise_error=False)
            assert answer.code == 404, private
    finally:
        proxy.terminate()
        proxy.wait(10)


async def chatty_client(port: int, rounds: int, halfway: list, killed: asyncio.Event) -> dict:
    """Chat through the proxy; on a lost connection resume and resend what was not acknowledged."""
    origin = f"http://127.0.0.1:{port}"
    client = await Client.connect(port, origin=origin)
    welcome = await client.hello()
    token, last_seq, acked, reconnects = welcome["resume"], 0, {}, 0
    pending = [f"m{i}-{welcome['session'][:6]}" for i in range(rounds)]
    while pending:
        message_id = pending[0]
        try:
            await client.send({"type": "message", "id": message_id, "text": "tell me a joke"})
            frames = await client.recv_until("ack", timeout=10, id=message_id)
        except (AssertionError, WebSocketClosedError, StreamClosedError):
            await killed.wait()
            reconnects += 1
            client = await Client.connect(port, origin=origin)
            assert (await client.hello(resume=token, last_seq=last_seq))["resumed"] is True
            continue
        last_seq = max([f["seq"] for f in frames if f["type"] == "reply"] + [last_seq])
        acked[message_id] = frames[-1]["seq"]
        pending.pop(0)
        if len(acked) == rounds // 2:  # wait here so that the kill lands mid-conversation for everyone
            halfway.append(token)
            await killed.wait()
    await client.send({"type": "history", "limit": 500})
    entries = (await client.recv_until("history"))[-1]["entries"]
    client.close()
    return {"acked": acked, "entries": entries, "reconnects": reconnects}


@pytest.mark.gen_test(timeout=180)
async def test_sigkill_of_a_node_under_load_loses_nothing(tmp_path, nodes):
    import json

    from tornado.httpclient import AsyncHTTPClient

    listen = free_port()
    proxy = nginx_in_front(tmp_path, listen, [node.port for node in nodes])
    killed, halfway = asyncio.Event(), []
    try:
        tasks = [asyncio.ensure_future(chatty_client(listen, 30, halfway, killed)) for _ in range(12)]
        while len(halfway) < len(tasks):
            await asyncio.sleep(0.02)
        http = AsyncHTTPClient(force_instance=True)
        on_victim = json.loads((await http.fetch(f"http://127.0.0.1:{nodes[0].port}/healthz")).body)["connections"]
        nodes[0].kill()
        killed.set()
        results = await asyncio.gather(*tasks)
    finally:
        proxy.terminate()
        proxy.wait(10)
    assert on_victim > 0, "least_conn gave the killed node its share"
    assert sum(r["reconnects"] for r in results) == on_victim, "exactly its clients reconnected"
    for result in results:
        stored = [e.get("id") for e in result["entries"] if e["from"] == "user"]
        assert len(stored) == len(set(stored)) == 30, "every message processed exactly once"
        seqs = {e.get("id"): e["seq"] for e in result["entries"] if e["from"] == "user"}
        assert all(seqs[message_id] == seq for message_id, seq in result["acked"].items())


@pytest.mark.gen_test(timeout=60)
async def test_a_resume_on_a_node_does_not_swallow_another_nodes_turn_for_its_tabs(tmp_path, postgres_url):
    from tests.server_helpers import running_server

    async with running_server(tmp_path / "1", db=postgres_url) as first, \
            running_server(tmp_path / "2", db=postgres_url) as second:
        on_note = first.sessions.on_note  # node 1 hears of other nodes' turns late (a busy loop)
        first.listener.on_note = lambda body: asyncio.get_running_loop().call_later(0.3, on_note, body)
        tab = await Client.connect(first.port)
        welcome = await tab.hello()
        await tab.recv()
        other = await Client.connect(second.port)
        await other.hello(resume=welcome["resume"], last_seq=welcome["last_seq"])
        await other.say("hello there", id="far-1")
        third = await Client.connect(first.port)  # opens on node 1 before node 1 heard of far-1
        await third.hello(resume=welcome["resume"])
        seen = await tab.recv_until("reply", in_reply_to="far-1")
        assert seen[0]["type"] == "user" and seen[0]["id"] == "far-1"


async def logged_in_on_two_nodes_the_second_deaf(first, second, user: str, monkeypatch, deaf_for: float):
    """Tabs of one session logged in as `user` on each node; the second node's LISTEN connection is
    then cut, and comes back only after `deaf_for` seconds. Return both tabs and the welcome."""
    import psycopg2

    from chatbot import cluster
    from tests.conftest import POSTGRES_DSN

    near = await Client.connect(first.port)
    welcome = await near.hello()
    await near.recv()
    far = await Client.connect(second.port)
    await far.hello(resume=welcome["resume"])
    registered = await register(near, user, PASSWORD)
    await far.recv_until("reply", seq=registered[-2]["seq"])
    monkeypatch.setattr(cluster, "RECONNECT_DELAYS", (deaf_for,))
    admin = psycopg2.connect(POSTGRES_DSN)
    admin.autocommit = True
    admin.cursor().execute("SELECT pg_terminate_backend(%s)", (second.listener.conn.get_backend_pid(),))
    admin.close()
    while second.listener.conn is not None:
        await asyncio.sleep(0.01)
    return near, far, welcome


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("far_speaks", [False, True], ids=["far tab quiet", "far tab speaks"])
async def test_a_logout_a_node_missed_while_its_listener_was_down_still_gives_its_tabs_a_working_token(
        tmp_path, postgres_url, monkeypatch, far_speaks):
    from tests.server_helpers import running_server

    async with running_server(tmp_path / "1", db=postgres_url) as first, \
            running_server(tmp_path / "2", db=postgres_url) as second:
        # Down long enough to miss the logout.
        near, far, welcome = await logged_in_on_two_nodes_the_second_deaf(first, second, "olga", monkeypatch, 2.0)
        logout = await near.press("logout")
        retired = new_token(logout)
        logged_out = [f["seq"] for f in logout if f["type"] == "reply"]
        if far_speaks:
            # Its turn meets the logout in the store (a conflict): it catches up, the logout's
            # replies included, before the listener comes back.
            assert (await far.say("who am I?"))[-1]["type"] == "ack"
            assert second.listener.conn is None, "the listener was still down"
        caught_up = await far.recv_until("auth", timeout=10)
        assert caught_up[-1]["user"] is None and caught_up[-1]["resume"] != retired
        shown = [f["seq"] for f in far.frames if f["type"] == "reply"]
        assert set(logged_out) <= set(shown)
        if not far_speaks:
            assert [f["seq"] for f in caught_up if f["type"] == "reply"] == logged_out
        assert (await near.recv_until("auth"))[-1] == caught_up[-1], "the tab that logged out gets it too"
        for node in (first, second):
            tab = await Client.connect(node.port)
            resumed = await tab.hello(resume=caught_up[-1]["resume"])
            assert resumed["resumed"] is True and resumed["session"] == welcome["session"]
        stale = await Client.connect(first.port)
        assert (await stale.hello(resume=retired))["resumed"] is False
        # The listener that came back hears the other node's turns again, as they happen.
        said = await near.say("hello again")
        assert replies(await far.recv_until("reply", seq=said[-2]["seq"])) == replies(said)


@pytest.mark.gen_test(timeout=60)
async def test_a_language_a_reconnect_chose_on_one_node_holds_for_the_tabs_on_another(tmp_path, postgres_url):
    from tests.server_helpers import running_server

    async with running_server(tmp_path / "1", db=postgres_url) as first, \
            running_server(tmp_path / "2", db=postgres_url) as second:
        near = await Client.connect(first.port)
        welcome = await near.hello(lang="en")
        await near.recv()
        far = await Client.connect(second.port)
        assert (await far.hello(resume=welcome["resume"], lang="ru"))["lang"] == "ru"
        for _ in range(200):  # the note reaches the first node
            if first.sessions.live[welcome["session"]].state.lang == "ru":
                break
            await asyncio.sleep(0.01)
        said = await near.say("who am i")
        assert replies(said) == ["Чтобы поговорить, сначала войдите или зарегистрируйтесь."]
        assert replies(await far.recv_until("reply", seq=said[-2]["seq"])) == replies(said)


async def two_tabs_on_two_nodes(nodes) -> tuple[Client, Client]:
    """A new session's tab on the first node, greeted, and a second tab of it on the second."""
    first = await Client.connect(nodes[0].port)
    welcome = await first.hello()
    await first.recv()
    second = await Client.connect(nodes[1].port)
    await second.hello(resume=welcome["resume"])
    return first, second


@pytest.mark.gen_test(timeout=120)
async def test_a_secret_resent_to_another_node_after_it_was_taken_gets_its_ack(nodes):
    first, second = await two_tabs_on_two_nodes(nodes)
    await first.press("register")
    await first.say("sergei")
    for client_id in ("pw-1", "pw-2"):  # the password, then its confirmation, which logs in
        await first.send({"type": "message", "id": client_id, "text": PASSWORD, "secret": True})
        acked = (await first.recv_until("ack", id=client_id))[-1]
    await second.recv_until("auth")  # the other node has taken the turn in: no password asked now
    # A tab that missed the ack resends there: only the store knows that id on that node.
    await second.send({"type": "message", "id": "pw-2", "text": PASSWORD, "secret": True})
    again = await second.recv()
    while again["type"] not in ("ack", "error"):
        again = await second.recv()
    assert again == {"type": "ack", "id": "pw-2", "seq": acked["seq"]}


@pytest.mark.gen_test(timeout=120)
async def test_a_registration_retried_after_another_nodes_turn_came_first_logs_in_the_account_it_made(nodes):
    came_first = 0
    for attempt in range(3):  # the other node's turn must land while the password is hashed
        first, second = await two_tabs_on_two_nodes(nodes)
        await first.press("register")
        await first.say(f"rita{attempt}")
        await first.say(PASSWORD)
        confirming = first.next_id()
        await first.send({"type": "message", "id": confirming, "text": PASSWORD, "secret": True})
        await asyncio.sleep(0.005)
        switched = await second.press("lang:ru")
        frames = await first.recv_until("ack", id=confirming)
        assert [f["user"] for f in frames if f["type"] == "auth"] == [f"rita{attempt}"], replies(frames)
        assert not [f for f in frames if f["type"] == "error"]
        came_first += switched[-1]["seq"] < frames[-1]["seq"]
        first.close()
        second.close()
        if came_first:
            break
    assert came_first, "the other node's turn never came first: the retry was not exercised"
