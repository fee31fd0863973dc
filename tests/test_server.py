"""The server through real WebSocket connections to a real server on a free port."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.websocket import WebSocketClosedError

from chatbot.errors import StorageError
from chatbot.logs import record_fields
from tests.server_helpers import Client, new_token, register, replies, running_server

PASSWORD = "correct horse battery"  # what register() uses unless told otherwise


@pytest.mark.gen_test(timeout=30)
async def test_health_and_page(tmp_path, caplog):
    async with running_server(tmp_path) as server:
        http = AsyncHTTPClient()
        health = json.loads((await http.fetch(f"http://127.0.0.1:{server.port}/healthz")).body)
        assert health["status"] == "ok" and health["connections"] == 0 and "version" in health
        page = await http.fetch(f"http://127.0.0.1:{server.port}/")
        assert b'role="log"' in page.body
        policy = page.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy
        metrics = await http.fetch(f"http://127.0.0.1:{server.port}/metrics")
        assert b"chatbot_connections_open" in metrics.body
        head = await http.fetch(f"http://127.0.0.1:{server.port}/healthz", method="HEAD")
        assert (head.code, head.body) == (200, b""), "what load balancers often send"
        nul = await http.fetch(f"http://127.0.0.1:{server.port}/index.html%00", raise_error=False)
        assert nul.code == 404
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


@pytest.mark.gen_test(timeout=30)
async def test_health_says_503_while_the_server_stops(tmp_path):
    async with running_server(tmp_path / "data", slow_greeting_engine(tmp_path)) as server:
        # Opened before the stop, as a balancer's kept-alive connection would be.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        newcomer = await Client.connect(server.port)
        await newcomer.send({"type": "hello"})
        await asyncio.sleep(0.2)  # its greeting is under way, and holds the stop
        stopping = asyncio.ensure_future(server.stop())
        await asyncio.sleep(0.1)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        await stopping
    assert status.startswith(b"HTTP/1.1 503 ")


@pytest.mark.gen_test(timeout=30)
async def test_health_and_metrics_tell_when_the_database_fails_writes(tmp_path):
    async def health() -> tuple[int, dict, bytes]:
        http = AsyncHTTPClient()
        answer = await http.fetch(f"http://127.0.0.1:{server.port}/healthz", raise_error=False)
        metrics = (await http.fetch(f"http://127.0.0.1:{server.port}/metrics")).body
        return answer.code, json.loads(answer.body), next(line for line in metrics.splitlines()
                                                          if line.startswith(b"chatbot_db_failing "))

    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        await client.hello()
        await client.recv()
        assert await health() == (200, {**(await health())[1], "status": "ok", "database": "ok"},
                                  b"chatbot_db_failing 0.0")
        await asyncio.sleep(0.7)  # past the sweeper's first clean-up: from now on only its probe writes
        database = server.store._database  # this thread's connection is the one the writer uses
        pages = database.execute_sql("PRAGMA page_count").fetchone()[0]
        database.execute_sql(f"PRAGMA max_page_count = {pages}")  # the disk is full
        outcomes = []
        while "error" not in outcomes and len(outcomes) < 50:  # until the file would have to grow
            client_id = client.next_id()
            await client.send({"type": "message", "id": client_id, "text": "x" * 3000})
            frame = await client.recv()
            while frame.get("id") != client_id and frame.get("in_reply_to") != client_id:
                frame = await client.recv()
            outcomes.append(frame["type"])
        assert outcomes[-1] == "error"
        code, body, metric = await health()
        assert (code, body["status"], body["database"], metric) == (503, "failing", "failing",
                                                                    b"chatbot_db_failing 1.0")
        database.execute_sql("PRAGMA max_page_count = 1073741823")  # space again
        for _ in range(50):  # with no turn coming in, the sweeper's probe finds out
            code, body, metric = await health()
            if code == 200:
                break
            await asyncio.sleep(0.1)
        assert (code, body["status"], metric) == (200, "ok", b"chatbot_db_failing 0.0")
        assert (await client.say("hello"))[-1]["type"] == "ack"


@pytest.mark.gen_test(timeout=30)
async def test_a_database_file_deleted_under_the_server_acknowledges_nothing_more(tmp_path):
    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        await client.hello()
        await client.recv()
        assert (await client.say("hello"))[-1]["type"] == "ack"
        for path in tmp_path.glob("chatbot.db*"):
            path.unlink()
        await client.send({"type": "message", "id": "lost", "text": "hello again"})
        frame = await client.recv()
        assert (frame["type"], frame["code"], frame["in_reply_to"]) == ("error", "internal_error", "lost")
        health = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{server.port}/healthz", raise_error=False)
        assert (health.code, json.loads(health.body)["database"]) == (503, "failing")


@pytest.mark.gen_test(timeout=60)
async def test_register_chat_logout_and_log_back_in(tmp_path):
    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        welcome = await client.hello(lang="en")
        assert welcome["resumed"] is False and welcome["user"] is None and len(welcome["resume"]) >= 22
        greeting = await client.recv()
        assert greeting["type"] == "reply" and greeting["seq"] == 1
        assert [b["action"] for b in greeting["buttons"]] == ["login", "register"]

        frames = await register(client)
        auth = next(f for f in frames if f["type"] == "auth")
        assert auth["user"] == "ann" and auth["resume"] != welcome["resume"], "login rotates the token"
        assert replies(frames)[0] == "Your account is ready, ann. You are logged in."

        frames = await client.say("who am I?")
        assert replies(frames) == ["You are logged in as ann."]
        assert frames[-1] == {"type": "ack", "id": frames[-1]["id"], "seq": frames[0]["seq"] - 1}

        frames = await client.press("logout")
        assert next(f for f in frames if f["type"] == "auth")["user"] is None
        frames = await client.press("login")
        await client.say("ANN")
        frames = await client.say(PASSWORD)
        assert replies(frames)[0] == "Welcome back, ann!"
        assert next(f for f in frames if f["type"] == "auth")["user"] == "ann"
        client.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_client_without_hello_gets_welcome_before_its_first_reply(tmp_path):
    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        frames = await client.say("hello")
        kinds = [f["type"] for f in frames]
        assert kinds[0] == "welcome"
        assert kinds.index("welcome") < kinds.index("reply")
        assert kinds[-1] == "ack"


@pytest.mark.gen_test(timeout=60)
async def test_two_tabs_share_a_session_and_both_see_every_reply(tmp_path):
    async with running_server(tmp_path) as server:
        first = await Client.connect(server.port)
        await first.hello()
        await first.recv()
        frames = await register(first)
        token = new_token(frames)
        second = await Client.connect(server.port)
        welcome = await second.hello(resume=token)
        assert welcome["resumed"] is True and welcome["user"] == "ann"

        frames = await first.say("tell me a joke")
        seen_by_second = await second.recv_until("reply", seq=frames[-2]["seq"])
        assert seen_by_second[0] == {"type": "user", "seq": frames[0]["seq"] - 1, "id": frames[-1]["id"],
                                     "text": "tell me a joke"}
        assert seen_by_second[-1]["text"] == replies(frames)[-1]
        frames = await second.say("who am i")
        assert (await first.recv_until("reply"))[-1]["text"] == "You are logged in as ann."


@pytest.mark.gen_test(timeout=60)
async def test_resume_with_last_seq_returns_exactly_what_was_missed_in_order(tmp_path):
    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        welcome = await client.hello()
        await client.recv()
        seen = 1
        client.close()
        other = await Client.connect(server.port)
        await other.hello(resume=welcome["resume"])
        missed = []
        for text in ["hi", "register", "zed"]:
            frames = await other.say(text)
            ack = next(f for f in frames if f["type"] == "ack")
            missed.append({"type": "user", "seq": ack["seq"], "text": text, "id": ack["id"]})
            missed += [f for f in frames if f["type"] == "reply"]
        back = await Client.connect(server.port)
        resumed = await back.hello(resume=welcome["resume"], last_seq=seen)
        assert resumed["resumed"] is True and resumed["last_seq"] == missed[-1]["seq"]
        resent = [await back.recv() for _ in missed]
        assert [(f["type"], f["seq"]) for f in resent] == [(f["type"], f["seq"]) for f in missed]
        assert [f["text"] for f in resent] == [f["text"] for f in missed]
        assert [f.get("id") for f in resent if f["type"] == "user"] == [f["id"] for f in missed if f["type"] == "user"]
        await back.send({"type": "ping"})
        assert await back.recv() == {"type": "pong"}, "nothing more than what was missed was resent"


@pytest.mark.gen_test(timeout=30)
async def test_history_gives_both_sides_in_order_with_secrets_masked(tmp_path):
    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        welcome = await client.hello()
        await client.recv()
        await client.press("login")
        await client.say("ann")
        await client.say("my secret password")
        reloaded = await Client.connect(server.port)
        await reloaded.hello(resume=welcome["resume"], history=50)
        history = await reloaded.recv()
        assert history["type"] == "history" and history["more"] is False
        entries = history["entries"]
        assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
        assert [e["from"] for e in entries][:3] == ["bot", "bot", "user"]
        secret = [e for e in entries if e.get("secret")]
        assert secret and secret[0]["text"] == "••••••"
        assert "my secret password" not in json.dumps(entries)
        await reloaded.send({"type": "history", "before_seq": entries[2]["seq"], "limit": 1})
        older = await reloaded.recv()
        assert [e["seq"] for e in older["entries"]] == [entries[1]["seq"]] and older["more"] is True


@pytest.mark.gen_test(timeout=30)
async def test_a_resent_id_is_acknowledged_again_but_not_processed_twice(tmp_path):
    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        await client.hello()
        await client.recv()
        first = await client.say("hello", id="dup-1")
        again = await client.say("hello", id="dup-1")
        assert again == [first[-1]], "only the ack comes back"
        after = await client.say("hello", id="dup-2")
        assert after[0]["seq"] == first[-2]["seq"] + 2, "the duplicate took no seq"


@pytest.mark.gen_test(timeout=30)
async def test_unknown_token_starts_a_new_session(tmp_path):
    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        welcome = await client.hello(resume="not-a-real-token")
        assert welcome["resumed"] is False


@pytest.mark.gen_test(timeout=60)
async def test_a_session_survives_a_server_restart(tmp_path):
    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        await client.hello()
        await client.recv()
        frames = await register(client, "bob")
        token = new_token(frames)
        await client.say("call me Bobby")
        last_seq = client.frames[-2]["seq"]
    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        welcome = await client.hello(resume=token, last_seq=last_seq)
        assert welcome["resumed"] is True and welcome["user"] == "bob" and welcome["last_seq"] == last_seq
        frames = await client.say("what is my name?")
        assert replies(frames) == ["You asked me to call you Bobby."]
        assert frames[0]["seq"] == last_seq + 2


@pytest.mark.gen_test(timeout=60)
async def test_passwords_never_reach_the_database(tmp_path):
    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        await client.hello()
        await client.recv()
        await register(client, "carol", "Unique-Secret-Passw0rd")
        await client.press("logout")
        await client.press("login")
        await client.say("carol")
        await client.say("Wrong-Secret-Attempt")
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("chatbot.db*"))
    assert b"carol" in raw
    assert b"Unique-Secret-Passw0rd" not in raw and b"Wrong-Secret-Attempt" not in raw
    rows = sqlite3.connect(tmp_path / "chatbot.db").execute("select password_hash from users").fetchall()
    assert rows[0][0].startswith("$argon2id$")


BAD_FRAMES = [
    ("{not json", "bad_json"),
    ("[1, 2]", "not_object"),
    ('"text"', "not_object"),
    ('{"type": "dance"}', "unknown_type"),
    ('{"text": "hi"}', "missing_field"),
    ('{"type": "message"}', "missing_field"),
    ('{"type": "message", "text": 5}', "bad_field"),
    ('{"type": "message", "text": "hi", "id": 7}', "bad_field"),
    ('{"type": "message", "text": "   "}', "bad_field"),
    ('{"type": "hello", "last_seq": -1}', "bad_field"),
    ('{"type": "action", "name": ""}', "bad_field"),
    ('{"type": "message", "text": "' + "x" * 4001 + '"}', "text_too_long"),
    ('{"type": "message", "text": "\\ud800 lone"}', "lone_surrogate"),
    (b'{"type": "message", "text": "\xff\xfe"}', "bad_utf8"),
]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("deflate", [False, True])
async def test_bad_frames_get_their_error_code_and_the_connection_keeps_working(tmp_path, deflate):
    async with running_server(tmp_path, rate_burst=100, deflate=deflate) as server:
        client = await Client.connect(server.port, deflate=deflate)
        assert ("permessage-deflate" in client.conn.headers.get("Sec-WebSocket-Extensions", "")) is deflate
        await client.hello()
        await client.recv()
        for raw, code in BAD_FRAMES:
            if isinstance(raw, bytes):  # a text frame that is not valid UTF-8
                await client.conn.write_message(raw, binary=False)
            else:
                await client.send(raw)
            error = await client.recv()
            assert (error["type"], error["code"]) == ("error", code), raw
            assert error["message"]
        frames = await client.say("hello")
        assert replies(frames)


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("deflate", [False, True])
async def test_an_oversized_frame_closes_with_1009(tmp_path, deflate):
    # Compressed, 2,000 x's take a few bytes on the wire: the limit holds for the text they make.
    async with running_server(tmp_path, max_frame_bytes=1024, deflate=deflate) as server:
        client = await Client.connect(server.port, deflate=deflate)
        await client.send({"type": "message", "text": "x" * 2000})
        assert await client.recv() is None
        assert client.conn.close_code == 1009
        fine = await Client.connect(server.port)
        assert (await fine.hello())["type"] == "welcome", "the server is still up"


@pytest.mark.gen_test(timeout=30)
async def test_the_log_says_who_closed_a_connection_with_what_code_and_reason(tmp_path, caplog):
    caplog.set_level("INFO", logger="chatbot")
    async with running_server(tmp_path, max_frame_bytes=1024) as server:
        oversized = await Client.connect(server.port)
        await oversized.send({"type": "message", "text": "x" * 2000})
        assert await oversized.recv() is None
        leaving = await Client.connect(server.port)
        await leaving.hello()
        leaving.conn.close(4000, "bye")  # the client's own close

        def closes() -> list[dict]:
            return [record_fields(r) for r in caplog.records if r.getMessage() == "conn.close"]

        # The server logs the client's close once it has read it, however loaded the machine.
        deadline = time.monotonic() + 10
        while len(closes()) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    said = [(fields["by"], fields.get("code"), fields.get("reason")) for fields in closes()]
    assert said[:2] == [("server", 1009, "message too big"), ("client", 4000, "bye")]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("opcode", [0x1, 0x2], ids=["text", "binary"])
async def test_corrupt_compressed_data_closes_with_1007_and_logs_no_error(tmp_path, caplog, opcode):
    async with running_server(tmp_path, deflate=True) as server:
        client = await Client.connect(server.port, deflate=True)
        await client.hello()
        await client.recv()
        client.conn.protocol._write_frame(True, opcode, b"\xff\xff\xff\xff", flags=0x40)  # RSV1: compressed
        assert await client.recv() is None
        assert client.conn.close_code == 1007
        fine = await Client.connect(server.port)
        assert (await fine.hello())["type"] == "welcome", "the server is still up"
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.gen_test(timeout=30)
async def test_a_frame_of_an_opcode_websocket_does_not_define_closes_with_1002(tmp_path, caplog):
    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        await client.hello()
        await client.recv()
        client.conn.protocol._write_frame(True, 0x3, b"{}")  # 0x3 to 0x7 are reserved (RFC 6455, 5.2)
        assert await client.recv() is None
        assert client.conn.close_code == 1002
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.gen_test(timeout=60)
async def test_history_asked_for_and_never_read_is_refused_as_too_fast(tmp_path, caplog):
    from chatbot.server import UNSENT_LIMIT

    caplog.set_level("INFO", logger="chatbot")
    async with running_server(tmp_path, rate_limit=10_000, rate_burst=10_000) as server:
        client = await Client.connect(server.port)
        await client.hello()
        await client.recv()
        for n in range(100):  # a conversation whose history is about 400 KB
            await client.say(f"{n} " + "x" * 3990)
        (socket,) = server.connections
        # Tornado's client stops reading from its socket while a message waits to be read: once
        # the sockets' buffers are full, what the server writes stays in its memory.
        for _ in range(200):
            try:
                await client.send({"type": "history", "limit": 500})
            except WebSocketClosedError:
                break

        def refused() -> list[dict]:
            return [record_fields(r) for r in caplog.records if r.getMessage() == "ratelimit.hit"]

        # Refused from the time 4 MiB wait unread: once ten come in a row, the connection is closed.
        deadline = time.monotonic() + 30
        while server.connections and len(refused()) < 100 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert refused() and {hit["kind"] for hit in refused()} == {"unread"}
        if server.connections:
            assert socket._unsent() < UNSENT_LIMIT + 1_000_000, "what waits unread stays bounded"
        else:
            closes = [record_fields(r) for r in caplog.records if r.getMessage() == "conn.close"]
            assert [(c["by"], c["code"], c["reason"]) for c in closes] == [("server", 1008, "rate limit exceeded")]


@pytest.mark.gen_test(timeout=60)
async def test_a_tab_that_reads_nothing_of_its_sessions_traffic_is_cut_off_before_it_fills_memory(tmp_path, caplog):
    caplog.set_level("INFO", logger="chatbot")
    async with running_server(tmp_path, rate_limit=100_000, rate_burst=100_000) as server:
        talker = await Client.connect(server.port)
        welcome = await talker.hello()
        await talker.recv()
        silent = await Client.connect(server.port)
        await silent.hello(resume=welcome["resume"])  # another tab of the session, which never reads
        cut_at = next(iter(server.connections)).unsent_cut
        # Each message is relayed to the silent tab (4 KB), with its reply: up to 40 MB in all.
        for n in range(10_000):
            await talker.say(f"{n} " + "y" * 3990)
            if len(server.connections) == 1:
                break
        assert len(server.connections) == 1, f"cut once more than {cut_at} bytes were left unread"
        assert replies(await talker.say("hello")), "the tab that reads goes on"
    closes = [record_fields(r) for r in caplog.records if r.getMessage() == "conn.close"]
    assert ("server", 1008, "the client does not read what it is sent") in [
        (c["by"], c["code"], c["reason"]) for c in closes]


@pytest.mark.gen_test(timeout=30)
async def test_rate_limit_errors_then_closes_with_1008(tmp_path, caplog):
    caplog.set_level("INFO", logger="chatbot")
    async with running_server(tmp_path, rate_limit=1, rate_burst=3, rate_strikes=3) as server:
        client = await Client.connect(server.port)
        # More than the limit allows before the close: the frames after the close are dropped
        # unread, neither answered, logged nor counted.
        for _ in range(20):
            try:
                await client.send({"type": "ping"})
            except WebSocketClosedError:
                break
        kinds = []
        while (frame := await client.recv()) is not None:
            kinds.append(frame.get("code", frame["type"]))
        assert kinds == ["pong", "pong", "pong", "rate_limited", "rate_limited"]
        assert client.conn.close_code == 1008
        await asyncio.sleep(0.2)  # any frame still read would be logged by now
        hits = [record_fields(r) for r in caplog.records if r.getMessage() == "ratelimit.hit"]
        assert [hit["strikes"] for hit in hits] == [1, 2, 3]
        assert server.metrics.errors.labels(code="rate_limited")._value.get() == 3


@pytest.mark.gen_test(timeout=30)
async def test_strikes_are_forgiven_once_the_client_keeps_under_the_limit(tmp_path):
    # Each round sends 3 pings at once, one over the limit: at 4 a second the third still finds
    # no token when it comes up to a quarter of a second after the first. Three rounds would be
    # three strikes, and the connection closed, if strikes never ended. Burst 2 refills in 0.5 s:
    # each round starts with the bucket full, which forgives the strikes before it.
    async with running_server(tmp_path, rate_limit=4, rate_burst=2, rate_strikes=3) as server:
        client = await Client.connect(server.port)
        for _ in range(4):
            for _ in range(3):
                await client.send({"type": "ping"})
            kinds = [(await client.recv()).get("code", "pong") for _ in range(3)]
            assert sorted(kinds) == ["pong", "pong", "rate_limited"]
            await asyncio.sleep(0.6)
        await client.send({"type": "ping"})
        assert (await client.recv())["type"] == "pong"
        assert client.conn.close_code is None


@pytest.mark.gen_test(timeout=30)
async def test_a_rate_limited_frame_is_named_by_its_id_so_it_can_be_sent_again(tmp_path):
    async with running_server(tmp_path, rate_limit=1, rate_burst=2, rate_strikes=10) as server:
        client = await Client.connect(server.port)
        await client.hello()
        await client.recv()
        for frame in ({"type": "message", "id": "m-1", "text": "hi"}, {"type": "message", "id": "m-2", "text": "hi"},
                      {"type": "action", "id": "a-3", "name": "help"}, "not json"):
            await (client.conn.write_message(frame) if isinstance(frame, str) else client.send(frame))
        refused = []  # the hello and m-1 took the burst
        while len(refused) < 3:
            frame = await client.recv()
            assert frame is not None, refused
            if frame.get("code") == "rate_limited":
                refused.append(frame)
        assert [f.get("in_reply_to") for f in refused] == ["m-2", "a-3", None]


@pytest.mark.gen_test(timeout=30)
async def test_foreign_origin_is_refused_and_the_own_host_allowed(tmp_path):
    async with running_server(tmp_path) as server:
        with pytest.raises(HTTPClientError) as refused:
            await Client.connect(server.port, origin="http://evil.example")
        assert refused.value.code == 403
        client = await Client.connect(server.port, origin=f"http://127.0.0.1:{server.port}")
        assert (await client.hello())["type"] == "welcome"


@pytest.mark.gen_test(timeout=30)
async def test_connection_cap_per_address(tmp_path):
    async with running_server(tmp_path, max_connections_per_ip=2) as server:
        clients = [await Client.connect(server.port) for _ in range(3)]
        assert await clients[2].recv() is None
        assert clients[2].conn.close_code == 1008
        assert (await clients[0].hello())["type"] == "welcome"


@pytest.mark.gen_test(timeout=60)
async def test_logout_in_one_tab_ends_the_login_of_every_tab(tmp_path):
    async with running_server(tmp_path) as server:
        first = await Client.connect(server.port)
        await first.hello()
        await first.recv()
        token = new_token(await register(first, "erin"))
        second = await Client.connect(server.port)
        await second.hello(resume=token)
        logout = await first.press("logout")
        seen = await second.recv_until("reply", seq=logout[-2]["seq"])
        auth = next(f for f in seen if f["type"] == "auth")
        assert auth["user"] is None and auth["resume"] != token
        assert seen.index(auth) < [f["type"] for f in seen].index("reply"), "auth comes before the replies"
        frames = await second.say("who am i")
        assert replies(frames)[0] == "To chat with me, please log in or register first."
        stale = await Client.connect(server.port)
        assert (await stale.hello(resume=token))["resumed"] is False, "the old token stopped working"


@pytest.mark.gen_test(timeout=60)
async def test_a_hello_waiting_behind_a_login_does_not_join_with_the_token_the_login_retired(tmp_path):
    async with running_server(tmp_path) as server:
        first = await Client.connect(server.port)
        session_id = (await first.hello())["session"]
        await first.recv()
        await register(first)
        visitor_token = new_token(await first.press("logout"))
        await first.press("login")
        await first.say("ann")
        second = await Client.connect(server.port)
        await first.send({"type": "message", "id": "pw", "text": "correct horse battery"})
        live = server.sessions.live[session_id]
        while not live.lock.locked():  # the login turn checks the password on a thread, holding the lock
            await asyncio.sleep(0.001)
        await second.send({"type": "hello", "resume": visitor_token})
        logged_in = await first.recv_until("ack", id="pw")
        assert new_token(logged_in) != visitor_token
        welcome = (await second.recv_until("welcome"))[-1]
        assert welcome["resumed"] is False and welcome["user"] is None, "a new session, not the logged-in one"
        assert welcome["session"] != session_id
        frames = await first.say("who am i")
        assert "ann" in replies(frames)[0]
        with pytest.raises(asyncio.TimeoutError):  # the greeting was all; nothing of the logged-in conversation
            while True:
                assert (await second.recv(timeout=0.5))["type"] == "reply"


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_messages_from_two_tabs_are_processed_once_each_in_one_order(tmp_path):
    async with running_server(tmp_path, rate_burst=500) as server:
        first = await Client.connect(server.port)
        welcome = await first.hello()
        await first.recv()
        second = await Client.connect(server.port)
        await second.hello(resume=welcome["resume"])
        ids = {client: [f"{name}-{i}" for i in range(25)] for client, name in ((first, "a"), (second, "b"))}
        for i in range(25):  # interleave, without waiting for answers
            for client, sent in ids.items():
                await client.send({"type": "message", "id": sent[i], "text": "hi"})
        for client, sent in ids.items():
            await client.recv_until("ack", timeout=20, id=sent[-1])
        await first.send({"type": "history", "limit": 500})
        entries = (await first.recv_until("history"))[-1]["entries"]
        users = [e for e in entries if e["from"] == "user"]
        assert sorted(e["id"] for e in users) == sorted(ids[first] + ids[second])
        seqs = [e["seq"] for e in entries]
        assert seqs == list(range(1, len(entries) + 1)), "one gap-free sequence"
        for user in users:  # every message is followed by its own reply before the next message
            following = next(e for e in entries if e["seq"] == user["seq"] + 1)
            assert following["from"] == "bot" and following["in_reply_to"] == user["id"]


@pytest.mark.gen_test(timeout=30)
async def test_idle_sessions_leave_memory_and_expired_ones_do_not_resume(tmp_path):
    async with running_server(tmp_path, session_evict_after=0.2) as server:
        client = await Client.connect(server.port)
        welcome = await client.hello()
        await client.recv()
        assert len(server.sessions.live) == 1
        client.close()
        for _ in range(100):
            await asyncio.sleep(0.05)
            server.sessions.sweep()
            if not server.sessions.live:
                break
        assert not server.sessions.live, "a session without connections leaves memory"
        back = await Client.connect(server.port)
        assert (await back.hello(resume=welcome["resume"]))["resumed"] is True, "but stays in the database"
        back.close()
        await asyncio.sleep(0.3)
        server.sessions.sweep()
    db = sqlite3.connect(tmp_path / "chatbot.db")
    db.execute("update sessions set updated_at = updated_at - 40 * 86400")
    db.commit()
    async with running_server(tmp_path) as server:
        late = await Client.connect(server.port)
        assert (await late.hello(resume=welcome["resume"]))["resumed"] is False


@pytest.mark.gen_test(timeout=30)
async def test_permessage_deflate_is_off_unless_enabled(tmp_path):
    for deflate, expected in ((False, None), (True, "permessage-deflate")):
        async with running_server(tmp_path / str(deflate), deflate=deflate) as server:
            conn = (await Client.connect(server.port, deflate=True)).conn
            extensions = conn.headers.get("Sec-WebSocket-Extensions")
            assert (extensions.split(";")[0] if extensions else None) == expected
            conn.close()


@pytest.mark.gen_test(timeout=90)
async def test_the_same_conversation_on_postgresql(tmp_path, postgres_url):
    async with running_server(tmp_path, db=postgres_url) as server:
        client = await Client.connect(server.port)
        welcome = await client.hello()
        await client.recv()
        frames = await register(client, "pat")
        token = new_token(frames)
        await client.say("call me Patty")
    async with running_server(tmp_path, db=postgres_url) as server:
        client = await Client.connect(server.port)
        assert (await client.hello(resume=token))["user"] == "pat"
        assert replies(await client.say("what's my name")) == ["You asked me to call you Patty."]
    assert not (tmp_path / "chatbot.db").exists()
    assert welcome["resumed"] is False


@pytest.mark.gen_test(timeout=30)
async def test_a_session_deleted_by_expiry_under_a_connected_tab_asks_it_to_start_anew(tmp_path):
    # The sweeper runs every session_evict_after / 2: with a minute, its first clean-up of expired
    # sessions comes after this test, and cannot delete the aged session before the test does.
    async with running_server(tmp_path, session_evict_after=60) as server:
        client = await Client.connect(server.port)
        welcome = await client.hello()
        await client.recv()
        db = sqlite3.connect(tmp_path / "chatbot.db")
        db.execute("update sessions set updated_at = updated_at - 40 * 86400")
        db.commit()
        assert await server.sessions.delete_expired() == 1
        await client.send({"type": "message", "id": "late", "text": "hello"})
        error = await client.recv()
        assert (error["type"], error["code"]) == ("error", "session_expired")
        assert await client.recv() is None and client.conn.close_code == 1000
        again = await Client.connect(server.port)
        assert (await again.hello(resume=welcome["resume"]))["resumed"] is False


@pytest.mark.gen_test(timeout=30)
async def test_a_resume_that_finds_the_session_expired_ends_it_for_the_tab_still_connected(tmp_path, caplog):
    caplog.set_level("INFO", logger="chatbot")
    # No clean-up by the sweeper before the test ends (see the test above): what deletes the aged
    # session is the resume.
    async with running_server(tmp_path, session_evict_after=60) as server:
        idle = await Client.connect(server.port)
        welcome = await idle.hello()
        await idle.recv()
        db = sqlite3.connect(tmp_path / "chatbot.db")
        db.execute("update sessions set updated_at = updated_at - 40 * 86400")
        db.commit()
        server.sessions.live[welcome["session"]].updated_at -= 40 * 86400
        late = await Client.connect(server.port)
        assert (await late.hello(resume=welcome["resume"]))["resumed"] is False
        error = await idle.recv()
        assert (error["type"], error["code"]) == ("error", "session_expired")
        assert await idle.recv() is None and idle.conn.close_code == 1000
        assert welcome["session"] not in server.sessions.live
        assert db.execute("select count(*) from sessions where id = ?", (welcome["session"],)).fetchone() == (0,)
        deleted = [r for r in caplog.records if r.getMessage() == "sessions.deleted"]
        assert [record_fields(r)["count"] for r in deleted] == [1]
        again = await Client.connect(server.port)
        assert (await again.hello(resume=welcome["resume"]))["resumed"] is False, "no second copy of it"


@pytest.mark.gen_test(timeout=30)
async def test_a_resume_of_a_session_a_turn_renewed_meanwhile_goes_ahead(tmp_path):
    async with running_server(tmp_path) as server:
        tab = await Client.connect(server.port)
        welcome = await tab.hello()
        await tab.recv()
        await tab.say("hello")  # stored now: only the copy in memory is made to look old
        server.sessions.live[welcome["session"]].updated_at -= 40 * 86400
        other = await Client.connect(server.port)
        assert (await other.hello(resume=welcome["resume"]))["resumed"] is True
        frames = await tab.say("thanks")
        assert (await other.recv_until("reply"))[-1]["text"] == replies(frames)[0]


@pytest.mark.gen_test(timeout=60)
async def test_a_password_typed_into_a_box_an_update_renamed_is_masked_in_history_and_logs(tmp_path, caplog):
    import shutil
    from pathlib import Path

    from chatbot import dialogs
    from tests.engine_helpers import make_engine

    updated = tmp_path / "flows"
    shutil.copytree(Path(dialogs.__file__).parent / "flows", updated)
    registration = updated / "registration.yaml"
    registration.write_text(registration.read_text().replace("ask_password", "ask_secret"))
    async with running_server(tmp_path / "data") as server:
        client = await Client.connect(server.port)
        welcome = await client.hello()
        await client.recv()
        await client.press("register")
        assert (await client.say("alice"))[-2]["input"] == "password"
    caplog.set_level("INFO", logger="chatbot")
    async with running_server(tmp_path / "data", make_engine(updated)) as server:  # restarted with the update
        client = await Client.connect(server.port)
        await client.hello(resume=welcome["resume"])
        other = await Client.connect(server.port)
        await other.hello(resume=welcome["resume"])
        await client.say("Correct Horse 99")
        relayed = (await other.recv_until("user"))[-1]
        reader = await Client.connect(server.port)
        await reader.hello(resume=welcome["resume"], history=50)
        history = (await reader.recv_until("history"))[-1]
    assert relayed["text"] == "••••••"
    assert [e["text"] for e in history["entries"] if e["from"] == "user"][-1] == "••••••"
    assert any(r.getMessage() == "message.in" for r in caplog.records)
    assert not [r for r in caplog.records if "Correct Horse 99" in repr(r.__dict__)]
    assert b"Correct Horse 99" not in b"".join(p.read_bytes() for p in (tmp_path / "data").glob("chatbot.db*"))


@pytest.mark.gen_test(timeout=60)
async def test_a_clean_up_that_finds_the_database_locked_is_tried_again_and_eviction_goes_on(tmp_path):
    async with running_server(tmp_path) as server:
        # The sweeper's first clean-up comes half a second after the start: held until the lock
        # below is taken, it finds the database locked however long the test takes to get there.
        lock_taken = asyncio.Event()
        cleanups = []  # how each clean-up ended: the sessions it deleted, or its error
        delete_expired = server.sessions.delete_expired

        async def delete_expired_once_locked() -> int:
            await lock_taken.wait()
            try:
                deleted = await delete_expired()
            except Exception as error:
                cleanups.append(error)
                raise
            cleanups.append(deleted)
            return deleted

        server.sessions.delete_expired = delete_expired_once_locked
        expired = await Client.connect(server.port)
        await expired.hello()
        await expired.recv()
        expired.close()
        db = sqlite3.connect(tmp_path / "chatbot.db", isolation_level=None)
        db.execute("update sessions set updated_at = updated_at - 40 * 86400")
        db.execute("BEGIN IMMEDIATE")  # another program holds the write lock through the first clean-up
        lock_taken.set()
        deadline = time.monotonic() + 20  # it gives up after SQLite's 5 s busy timeout
        while not cleanups and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        db.execute("COMMIT")
        assert len(cleanups) == 1 and isinstance(cleanups[0], Exception), cleanups
        assert not server._sweeper.done()
        tab = await Client.connect(server.port)
        await tab.hello()
        await tab.recv()
        tab.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not server.sessions.live and db.execute("select count(*) from sessions").fetchone() == (1,):
                break
            await asyncio.sleep(0.1)
        assert not server.sessions.live, "sessions without tabs still leave memory"
        assert db.execute("select count(*) from sessions").fetchone() == (1,), "the expired one was deleted"


@pytest.mark.gen_test(timeout=30)
async def test_a_session_that_could_not_be_stored_leaves_nothing_behind(tmp_path):
    async with running_server(tmp_path) as server:
        db = sqlite3.connect(tmp_path / "chatbot.db")
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON sessions BEGIN SELECT RAISE(ABORT, 'disk says no'); END;")
        db.commit()
        for _ in range(3):
            client = await Client.connect(server.port)
            await client.send({"type": "hello"})
            assert (await client.recv())["code"] == "internal_error"
            client.close()
        assert server.sessions.live == {} and server.sessions.by_token == {}
        db.execute("DROP TRIGGER refuse")
        db.commit()
        client = await Client.connect(server.port)
        assert (await client.hello())["resumed"] is False, "and the server works once the database does"


@pytest.mark.gen_test(timeout=60)
async def test_frames_of_every_length_arrive_whole_with_and_without_deflate(tmp_path):
    # Frames queued in one round of the loop leave in one write, with headers made by the
    # server itself: 7-bit, 16-bit and 64-bit payload lengths, compressed or not.
    import random
    import string

    rng = random.Random(7)
    letters = string.ascii_letters + string.digits + " ,."  # random enough that deflate cannot shrink it much
    texts = ["".join(rng.choice(letters) for _ in range(4000)) for _ in range(30)]
    for deflate in (False, True):
        async with running_server(tmp_path / str(deflate), deflate=deflate, rate_burst=100) as server:
            first = await Client.connect(server.port, deflate=deflate)
            welcome = await first.hello()
            await first.recv()
            second = await Client.connect(server.port, deflate=deflate)
            await second.hello(resume=welcome["resume"])
            for text in texts:
                frames = await first.say(text)
                assert frames[-1]["type"] == "ack"
                echoed = await second.recv_until("user")
                assert echoed[-1]["text"] == text  # 4,000 characters: a 16-bit length
            await second.send({"type": "history", "before_seq": 10_000, "limit": 500})
            history = (await second.recv_until("history"))[-1]
            said = [entry["text"] for entry in history["entries"] if entry["from"] == "user"]
            assert said == texts  # one frame of over 120 KB: a 64-bit length
            assert len(json.dumps(history)) > 120_000
            first.close()
            second.close()


@pytest.mark.gen_test(timeout=30)
async def test_fields_of_other_frame_types_are_ignored_and_the_connection_stays(tmp_path):
    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        await client.send({"type": "hello", "id": True, "before_seq": None})
        assert (await client.recv())["type"] == "welcome"
        await client.recv()  # the greeting
        for frame in ({"type": "ping", "id": 5}, {"type": "history", "id": None, "last_seq": "x"},
                      {"type": "ping", "id": "x" * 100, "limit": -1}):
            await client.send(frame)
            assert (await client.recv())["type"] in ("pong", "history")
        assert [f["type"] for f in await client.say("hi")][-1] == "ack"


@pytest.mark.gen_test(timeout=30)
async def test_the_language_a_reconnecting_page_asks_for_is_stored(tmp_path):
    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        welcome = await client.hello(lang="en")
        await client.recv()
        client.close()
        again = await Client.connect(server.port)
        assert (await again.hello(resume=welcome["resume"], lang="ru"))["lang"] == "ru"
        again.close()
    async with running_server(tmp_path) as server:  # restarted: the session is read from the database
        back = await Client.connect(server.port)
        resumed = await back.hello(resume=welcome["resume"])
        assert (resumed["resumed"], resumed["lang"]) == (True, "ru")
        assert [f["type"] for f in await back.say("привет")][-1] == "ack"


@pytest.mark.gen_test(timeout=30)
async def test_a_language_that_cannot_be_stored_still_gets_the_page_its_welcome(tmp_path, monkeypatch):
    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        welcome = await client.hello(lang="en")
        await client.recv()
        client.close()

        def database_down(write):
            raise StorageError("storage: the database is down")

        monkeypatch.setattr(server.store, "save_turn", database_down)
        again = await Client.connect(server.port)
        assert (await again.hello(resume=welcome["resume"], lang="ru"))["lang"] == "ru"


@pytest.mark.gen_test(timeout=60)
async def test_a_text_a_pattern_runs_away_on_is_refused_and_the_server_goes_on(tmp_path, caplog):
    import shutil
    from pathlib import Path

    from chatbot import dialogs
    from tests.engine_helpers import make_engine

    flows = tmp_path / "flows"
    shutil.copytree(Path(dialogs.__file__).parent / "flows", flows)
    hub = flows / "hub.yaml"
    hub.write_text(hub.read_text(encoding="utf-8").replace("en: ['^👋$']", "en: ['^(a|aa)+$']"), encoding="utf-8")
    caplog.set_level("INFO", logger="chatbot")
    async with running_server(tmp_path / "data", make_engine(flows)) as server:
        client = await Client.connect(server.port)
        welcome = await client.hello()
        await client.recv()
        started = time.perf_counter()
        await client.send({"type": "message", "id": "slow-1", "text": "a" * 40 + "b"})
        refused = await client.recv()
        assert time.perf_counter() - started < 2
        assert refused["type"] == "error" and refused["code"] == "pattern_timeout"
        assert refused["in_reply_to"] == "slow-1"
        assert replies(await client.say("hello"))  # the loop is free: the next message is answered
        reader = await Client.connect(server.port)
        await reader.hello(resume=welcome["resume"], history=50)
        history = (await reader.recv_until("history"))[-1]
    assert "a" * 40 + "b" not in [entry["text"] for entry in history["entries"]]
    (logged,) = [r for r in caplog.records if r.getMessage() == "turn.pattern_timeout"]
    fields = record_fields(logged)
    assert fields["pattern"] == f"{hub}:29: intents.greet.patterns.en[0]"
    assert fields["id"] == "slow-1" and fields["chars"] == 41


@pytest.mark.gen_test(timeout=30)
async def test_a_session_the_database_refused_is_not_logged_as_created(tmp_path, caplog):
    caplog.set_level("INFO", logger="chatbot")
    async with running_server(tmp_path) as server:
        first = await Client.connect(server.port)
        await first.hello()
        await first.recv()
        for path in tmp_path.glob("chatbot.db*"):
            path.unlink()
        refused = await Client.connect(server.port)
        await refused.send({"type": "hello"})
        assert (await refused.recv())["code"] == "internal_error"
    created = [r for r in caplog.records if r.getMessage() == "session.created"]
    assert len(created) == 1, "only the session stored before the file went"


def slow_greeting_engine(tmp_path):
    """The built-in flows, with a blocking action that takes a second on the first state."""
    import shutil
    from pathlib import Path

    from chatbot import dialogs
    from chatbot.dialogs import Registry, action
    from chatbot.dialogs.registry import MARK
    from tests.engine_helpers import make_engine

    registry = Registry.with_builtins()

    @action(blocking=True)
    def slow_welcome(ctx):
        time.sleep(1.0)  # a call to a slow service

    registry.add(getattr(slow_welcome, MARK))
    flows = tmp_path / "flows"
    shutil.copytree(Path(dialogs.__file__).parent / "flows", flows)
    hub = flows / "hub.yaml"
    hub.write_text(hub.read_text(encoding="utf-8").replace("  - name: welcome\n",
                                                           "  - name: welcome\n    on_enter: slow_welcome\n"),
                   encoding="utf-8")
    return make_engine(flows, registry)


@pytest.mark.gen_test(timeout=30)
async def test_a_blocking_action_greeting_a_new_session_leaves_the_event_loop_free(tmp_path):
    async with running_server(tmp_path / "data", slow_greeting_engine(tmp_path)) as server:
        waiting = await Client.connect(server.port)
        newcomer = await Client.connect(server.port)
        started = time.perf_counter()
        await newcomer.send({"type": "hello"})
        await asyncio.sleep(0.1)  # the greeting is under way
        await waiting.send({"type": "ping"})
        assert (await waiting.recv())["type"] == "pong"
        answered = time.perf_counter() - started
        assert (await newcomer.recv())["type"] == "welcome"
        greeted = time.perf_counter() - started
    assert answered < 0.6 < 1.0 <= greeted


@pytest.mark.gen_test(timeout=30)
async def test_a_message_sent_without_an_id_reaches_other_tabs_without_one_as_a_resume_resends_it(tmp_path):
    async with running_server(tmp_path) as server:
        tab = await Client.connect(server.port)
        welcome = await tab.hello()
        await tab.recv()
        other = await Client.connect(server.port)
        await other.hello(resume=welcome["resume"])
        await tab.send({"type": "message", "text": "hello"})
        live = (await other.recv_until("user"))[-1]
        late = await Client.connect(server.port)
        await late.hello(resume=welcome["resume"], last_seq=1)
        resent = (await late.recv_until("user"))[-1]
    assert live == resent == {"type": "user", "seq": 2, "text": "hello"}


@pytest.mark.gen_test(timeout=30)
async def test_a_confirmation_typed_in_another_unicode_form_of_the_password_matches(tmp_path):
    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        await client.hello()
        await client.recv()
        await client.press("register")
        await client.say("ann")
        await client.say("password12 résumé")  # composed é
        frames = await client.say("ｐａｓｓｗｏｒｄ12 re\u0301sume\u0301")  # full-width letters, decomposed é
        assert any(frame["type"] == "auth" and frame["user"] == "ann" for frame in frames), replies(frames)
        other = await Client.connect(server.port)
        await other.hello()
        await other.recv()
        await other.press("login")
        await other.say("ann")
        assert any(frame["type"] == "auth" for frame in await other.say("password12 résumé"))


@pytest.mark.gen_test(timeout=30)
async def test_a_password_typed_into_a_box_another_tab_made_stale_is_kept_nowhere(tmp_path, caplog):
    caplog.set_level("INFO", logger="chatbot")
    async with running_server(tmp_path) as server:
        typing = await Client.connect(server.port)
        welcome = await typing.hello()
        await typing.recv()
        other = await Client.connect(server.port)
        await other.hello(resume=welcome["resume"])
        await typing.press("register")
        assert (await typing.say("ann"))[-2]["input"] == "password"
        await other.press("cancel")  # the other tab moves the dialog on; this one still shows the box
        await typing.send({"type": "message", "id": "pw", "text": "Correct Horse 99", "secret": True})
        refused = (await typing.recv_until("error"))[-1]
        assert (refused["code"], refused["in_reply_to"]) == ("secret_not_expected", "pw")
        assert replies(await typing.say("hello")), "the conversation goes on"
        reader = await Client.connect(server.port)
        await reader.hello(resume=welcome["resume"], history=50)
        history = (await reader.recv_until("history"))[-1]
    assert "Correct Horse 99" not in json.dumps(history) + json.dumps(other.frames)
    assert not [r for r in caplog.records if "Correct Horse 99" in repr(r.__dict__)]
    assert b"Correct Horse 99" not in b"".join(p.read_bytes() for p in tmp_path.glob("chatbot.db*"))


@pytest.mark.gen_test(timeout=30)
async def test_a_logout_forgets_the_conversation_before_it_for_the_next_person_at_the_page(tmp_path):
    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        await client.hello()
        await client.recv()
        await register(client, "ann", "correct horse battery")
        await client.say("call me Annie")
        frames = await client.say("log out")
        token = new_token(frames)
        goodbye = [frame for frame in frames if frame["type"] == "reply"]
        assert goodbye[0]["text"] == "You are logged out. Bye!"
        auth = next(frame for frame in frames if frame["type"] == "auth")
        assert auth["since"] == goodbye[0]["seq"], "where the next conversation starts"
        after_logout = await client.say("hello")
        next_person = await Client.connect(server.port)
        await next_person.hello(resume=token, history=100)
        history = (await next_person.recv_until("history"))[-1]
        resent = await Client.connect(server.port)
        await resent.hello(resume=token, last_seq=0)
        await resent.recv_until("reply", seq=max(f["seq"] for f in after_logout if "seq" in f))
    texts = [entry["text"] for entry in history["entries"]]
    assert texts[:len(goodbye)] == [reply["text"] for reply in goodbye]
    assert history["entries"][0]["seq"] == goodbye[0]["seq"]
    assert "call me Annie" not in texts and "ann" not in texts
    assert "hello" in texts, "what came after the logout is kept"
    assert [f["seq"] for f in resent.frames if f["type"] in ("reply", "user")][0] == goodbye[0]["seq"]
    stored = sqlite3.connect(tmp_path / "chatbot.db").execute("select min(seq) from history").fetchone()
    assert stored == (goodbye[0]["seq"],)


@pytest.mark.gen_test(timeout=30)
async def test_a_tab_away_while_its_user_logged_out_and_back_in_is_told_where_the_conversation_starts(tmp_path):
    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        welcome = await client.hello()
        assert "since" not in welcome, "no conversation has ended yet"
        await client.recv()
        await register(client, "ann", PASSWORD)
        shown = (await client.say("call me Annie"))[-1]["seq"]  # what a tab away last saw
        goodbye = [frame for frame in await client.say("log out") if frame["type"] == "reply"]
        await client.press("login")
        await client.say("ann")
        token = new_token(await client.say(PASSWORD))
        away = await Client.connect(server.port)  # back, with the token the other tab stored
        returned = await away.hello(resume=token, last_seq=shown)
        resent = await away.recv_until("reply", seq=returned["last_seq"])
    assert (returned["user"], returned["since"]) == ("ann", goodbye[0]["seq"])
    assert resent[0]["seq"] == goodbye[0]["seq"], "what came before it was forgotten"


@pytest.mark.gen_test(timeout=30)
async def test_a_failing_database_is_logged_as_a_warning_without_a_traceback_not_as_a_bug(tmp_path, caplog):
    caplog.set_level("INFO", logger="chatbot")
    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        await client.hello()
        await client.recv()
        for path in tmp_path.glob("chatbot.db*"):
            path.unlink()
        await client.send({"type": "message", "id": "lost", "text": "hello"})
        assert (await client.recv())["code"] == "internal_error"
    (failed,) = [r for r in caplog.records if r.getMessage() == "storage.failed"]
    assert failed.levelname == "WARNING" and not failed.exc_info
    assert "chatbot.db" in record_fields(failed)["reason"]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.gen_test(timeout=30)
async def test_a_history_read_before_a_logout_reaches_the_tabs_before_its_auth(tmp_path):
    async with running_server(tmp_path, rate_burst=1000) as server:
        tab = await Client.connect(server.port)
        welcome = await tab.hello()
        await tab.recv()
        await register(tab, "ann", "correct horse battery")
        for n in range(20):
            await tab.say(f"note {n}")
        reader = await Client.connect(server.port)
        await reader.hello(resume=new_token(tab.frames))
        for _ in range(30):
            await reader.send({"type": "history", "before_seq": 40, "limit": 50})
        await tab.press("logout")
        frames = await reader.recv_until("auth")
        for _ in range(30 - sum(f["type"] == "history" for f in frames)):
            frames.append(await reader.recv())
    after = frames[frames.index(next(f for f in frames if f["type"] == "auth")) + 1:]
    assert [f for f in after if f["type"] == "history" and f["entries"]] == [], \
        "no conversation from before the logout after the page was told to clear it"
    assert welcome["session"]


@pytest.mark.gen_test(timeout=30)
async def test_an_action_logging_another_user_in_forgets_the_conversation_before_it(tmp_path):
    import shutil
    from pathlib import Path

    from chatbot import dialogs
    from chatbot.dialogs import Registry, action
    from chatbot.dialogs.registry import MARK
    from tests.engine_helpers import make_engine

    @action
    def become_bob(ctx):
        ctx.log_in("bob")

    registry = Registry.with_builtins()
    registry.add(getattr(become_bob, MARK))
    flows = tmp_path / "flows"
    shutil.copytree(Path(dialogs.__file__).parent / "flows", flows)
    (flows / "switch.yaml").write_text(
        "name: switch\nlanguages: [en]\ninitial: go\nentry: {command: /switch, access: users}\n"
        "states:\n  - name: go\n    on_enter: become_bob\n    say: 'Now you are {user}.'\n    goto: chat\n",
        encoding="utf-8")
    async with running_server(tmp_path / "data", make_engine(flows, registry)) as server:
        bob = await Client.connect(server.port)
        await bob.hello()
        await bob.recv()
        await register(bob, "bob", "correct horse battery")
        alice = await Client.connect(server.port)
        await alice.hello()
        await alice.recv()
        await register(alice, "alice", "another horse battery")
        await alice.say("call me Secretname")
        frames = await alice.say("/switch")
        assert next(f for f in frames if f["type"] == "auth")["user"] == "bob"
        reader = await Client.connect(server.port)
        await reader.hello(resume=new_token(frames), history=100)
        history = (await reader.recv_until("history"))[-1]
    texts = [entry["text"] for entry in history["entries"]]
    assert texts[0] == "Now you are bob." and "call me Secretname" not in texts


@pytest.mark.gen_test(timeout=30)
async def test_secret_on_an_action_is_an_unknown_field_and_ignored(tmp_path):
    async with running_server(tmp_path) as server:
        client = await Client.connect(server.port)
        await client.hello()
        await client.recv()
        await client.send({"type": "action", "id": "a-1", "name": "help", "secret": True})
        frames = await client.recv_until("ack", id="a-1")
    assert [f["type"] for f in frames if f["type"] == "error"] == []
    assert replies(frames)


@pytest.mark.gen_test(timeout=30)
async def test_stopping_finishes_the_frames_in_flight_and_leaves_later_ones_to_be_resent(tmp_path):
    engine = slow_greeting_engine(tmp_path)
    async with running_server(tmp_path / "data", engine) as server:
        chatting = await Client.connect(server.port)
        welcome = await chatting.hello()
        await chatting.recv()
        newcomer = await Client.connect(server.port)
        await newcomer.send({"type": "hello"})
        await asyncio.sleep(0.2)  # its greeting is under way
        started = time.monotonic()
        stopping = asyncio.ensure_future(server.stop())
        await asyncio.sleep(0.1)
        await chatting.send({"type": "message", "id": "late-1", "text": "hello"})
        greeted = [frame["type"] for frame in await newcomer.recv_until("reply")]
        assert greeted == ["welcome", "reply"], "the greeting under way was finished"
        assert await newcomer.recv() is None and newcomer.conn.close_code == 1001
        assert await chatting.recv() is None, "a frame sent after the stop began got an answer"
        assert chatting.conn.close_code == 1001
        await stopping
        assert time.monotonic() - started < 2.0, "the drain waited only for the greeting"
    async with running_server(tmp_path / "data", engine) as server:
        back = await Client.connect(server.port)
        await back.hello(resume=welcome["resume"], last_seq=1)
        frames = await back.say("hello", id="late-1")  # the page resends what was not acknowledged
        assert [frame["type"] for frame in frames] == ["reply", "ack"]
        await back.send({"type": "history", "limit": 50})
        entries = (await back.recv_until("history"))[-1]["entries"]
        assert [entry.get("id") for entry in entries if entry["from"] == "user"] == ["late-1"]


@pytest.mark.gen_test(timeout=30)
async def test_an_address_starting_sessions_in_a_loop_is_told_to_wait_and_a_returning_page_is_not(tmp_path):
    async with running_server(tmp_path, new_sessions_per_ip=3) as server:
        tokens = []
        for _ in range(3):
            client = await Client.connect(server.port)
            tokens.append((await client.hello())["resume"])
            client.close()
        refused = await Client.connect(server.port)
        await refused.send({"type": "hello"})
        assert (await refused.recv())["code"] == "too_many_sessions"
        assert await refused.recv() is None and refused.conn.close_code == 1013
        implicit = await Client.connect(server.port)  # a message before any hello starts one too
        await implicit.send({"type": "message", "id": "m1", "text": "hi"})
        assert (await implicit.recv())["code"] == "too_many_sessions"
        back = await Client.connect(server.port)
        assert (await back.hello(resume=tokens[0]))["resumed"] is True, "a page coming back is not counted"
        assert server.store.count_sessions() == 3


@pytest.mark.gen_test(timeout=30)
async def test_the_per_address_limits_count_an_ipv6_host_by_its_64(tmp_path):
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    async def visit(port: int, address: str) -> dict:
        request = HTTPRequest(f"ws://127.0.0.1:{port}/ws", headers={"X-Real-IP": address})
        client = Client(await websocket_connect(request))
        await client.send({"type": "hello"})
        first = await client.recv()
        client.close()
        return first

    async with running_server(tmp_path, new_sessions_per_ip=3, trust_proxy_headers=True) as server:
        # One host may use any address of its /64: counted one by one, each would start anew.
        answers = [await visit(server.port, f"2001:db8::{n}") for n in range(1, 5)]
        assert [a["type"] for a in answers] == ["welcome"] * 3 + ["error"]
        assert answers[-1]["code"] == "too_many_sessions"
        assert (await visit(server.port, "2001:db8:0:1::1"))["type"] == "welcome", "another /64"
        assert (await visit(server.port, "203.0.113.7"))["type"] == "welcome"
        for _ in range(2):
            await visit(server.port, "::ffff:203.0.113.7")  # the same IPv4 client, written as IPv6
        assert (await visit(server.port, "203.0.113.7"))["code"] == "too_many_sessions"
