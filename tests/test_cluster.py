"""Several server processes on one PostgreSQL: sessions move freely between them."""

from __future__ import annotations

import pytest

from tests.process_helpers import ServerProcess
from tests.server_helpers import Client, replies

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
    await first.press("register")
    await first.say("nina")
    await first.say(PASSWORD)
    frames = await first.say(PASSWORD)
    token = next(f for f in frames if f["type"] == "auth")["resume"]
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
    resent = await third.recv()
    assert resent["type"] == "reply" and resent["text"] == "You asked me to call you Nini."
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


def test_more_than_one_worker_on_sqlite_is_refused(tmp_path, capsys):
    from chatbot.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--workers", "2", "--data-dir", str(tmp_path)])
    assert exit_.value.code == 2
    assert "use --db postgresql://" in capsys.readouterr().err
