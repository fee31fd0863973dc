"""Replaying recorded sessions against a running server over WebSocket.

Each session gets its own connection and speaks the chat protocol as the page does:
`hello` with the recorded language, then each recorded message or button press,
waiting for its `ack`; a recorded reconnect closes the connection and resumes the
session with its token.  Sessions start in their recorded order, at most `concurrency`
at a time, with the recorded pauses divided by `speed` (0: no pauses).

Only what travels over the wire is compared: the replies (text, buttons, input kind).
Transitions, slots and the environment's answers stay inside the server.  Texts that
the server may rightly vary (reply variants, the clock) are accepted as described in
`chatbot.replay.expect`; passwords are made up there too.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from urllib.parse import urlsplit

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from chatbot.accounts import username_key
from chatbot.dialogs import Engine
from chatbot.replay.expect import CannotReplay, Expectation, Passwords
from chatbot.replay.reader import Mark, RecordedSession, Step, UnusableInput
from chatbot.replay.runner import (DIVERGED, INCOMPLETE, SAME, Aspect, Divergence, Outcome, Replayer,
                                   incomplete_reason)

__all__ = ["replay_live"]

#: Pause before sending a frame again that the server refused for its rate limit.
RATE_LIMIT_PAUSE = 0.5


class _Broken(Exception):
    """The conversation with the server went wrong in a way that is itself the difference."""


def _seconds(ts: str) -> float | None:
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _reason(error: BaseException, timeout: float) -> str:
    """An error in words: a timeout or a closed WebSocket has no message of its own."""
    if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
        return f"no answer within {timeout:g} s"
    return str(error) or type(error).__name__


def _wire_reply(frame: dict) -> dict:
    return {"text": frame.get("text"),
            "buttons": [[b.get("label"), b.get("action")] for b in frame.get("buttons") or []
                        if isinstance(b, dict)],
            "input": frame.get("input") or "text"}


async def replay_live(engine: Engine, sessions: list[RecordedSession], url: str, *, speed: float = 0.0,
                      concurrency: int = 50, timeout: float = 10.0) -> list[Outcome]:
    """Play the sessions against the server at `url`; raise UnusableInput when it cannot be reached."""
    await _probe_server(url, timeout)
    passwords = Passwords()
    # Users some session registers: a login as one of them waits until that registration is done.
    registrations = {username_key(str(e["result"].get("user"))): asyncio.Event()
                     for s in sessions for step in s.steps for e in step.effects
                     if e.get("name") == "register" and isinstance(e.get("result"), dict) and e["result"].get("ok")}
    starts = [t for t in (_seconds(s.steps[0].ts) for s in sessions if s.steps) if t is not None]
    clock = _Clock(min(starts) if starts else 0.0, speed)
    gate = asyncio.Semaphore(concurrency)

    async def play(session: RecordedSession) -> Outcome:
        if not session.started:
            return Outcome(session, INCOMPLETE, reason="the log does not hold its start (session.created)")
        await clock.wait_for(session.steps[0].ts)
        async with gate:
            player = _Player(engine, session, url, passwords, registrations, clock, timeout)
            return await player.play()

    return list(await asyncio.gather(*(play(session) for session in sessions)))


async def _probe_server(url: str, timeout: float) -> None:
    if urlsplit(url).scheme not in ("ws", "wss"):
        raise UnusableInput(f"{url}: not a WebSocket URL (expected ws://HOST:PORT/ws or wss://…)")
    try:
        conn = await asyncio.wait_for(websocket_connect(HTTPRequest(url, connect_timeout=timeout)), timeout)
    except (OSError, HTTPClientError, StreamClosedError, asyncio.TimeoutError, ValueError) as error:
        raise UnusableInput(f"{url}: cannot open a WebSocket: {_reason(error, timeout)}") from None
    conn.close()


class _Clock:
    """Recorded times mapped onto now, `speed` times faster; speed 0 never waits."""

    def __init__(self, first: float, speed: float) -> None:
        self.first = first
        self.speed = speed
        self.started = time.monotonic()

    async def wait_for(self, ts: str) -> None:
        moment = _seconds(ts)
        if self.speed <= 0 or moment is None:
            return
        delay = self.started + (moment - self.first) / self.speed - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class _Player:
    """One recorded session played over one connection at a time."""

    def __init__(self, engine: Engine, session: RecordedSession, url: str, passwords: Passwords,
                 registrations: dict[str, asyncio.Event], clock: _Clock, timeout: float) -> None:
        self.engine = engine
        self.session = session
        self.url = url
        self.passwords = passwords
        self.registrations = registrations
        self.clock = clock
        self.timeout = timeout
        self.replayer = Replayer(engine, session)
        self.outcome = Outcome(session, SAME)
        self.conn: WebSocketClientConnection | None = None
        self.token: str | None = None
        self.last_seq = 0
        self.pending_password: str | None = None  # typed at a password input, for its confirmation
        self.resume_failed: Mark | None = None

    async def play(self) -> Outcome:
        step: Step | None = None
        last_seq = 0
        try:
            for item in self.session.timeline:
                if isinstance(item, Mark):
                    if item.kind == "resumed":
                        self.replayer.apply(item)  # a language the reconnect chose, as offline replay does
                        await self.reconnect(item)
                    continue
                step = item
                reason = incomplete_reason(item, last_seq)
                if reason is not None:
                    return self._incomplete(reason)
                if not item.finished:
                    self.outcome.notes.append(f"step {item.number} ({item.where}) has no reply in the log and "
                                              "was skipped")
                    continue
                if self.resume_failed is not None:
                    raise _Broken(f"the server did not resume the session at the reconnect of "
                                  f"{self.resume_failed.where}; it started a new one")
                last_seq = item.replies[-1]["seq"]
                if not await self.play_step(item):
                    return self.outcome
        except CannotReplay as why:
            return self._incomplete(f"step {step.number} ({step.where}) {why}" if step else str(why))
        except _Broken as problem:
            self._diverge(step, problem=str(problem))
        except (asyncio.TimeoutError, TimeoutError):
            self._diverge(step, problem=f"the server did not answer within {self.timeout:g} s")
        except (OSError, StreamClosedError, WebSocketClosedError, HTTPClientError) as error:
            self._diverge(step, problem=f"the connection failed: {_reason(error, self.timeout)}")
        except ValueError as error:  # json.JSONDecodeError included
            self._diverge(step, problem=f"the server sent a frame that is not JSON: {error}")
        finally:
            if self.conn is not None:
                self.conn.close()
        return self.outcome

    async def play_step(self, step: Step) -> bool:
        """Send one recorded turn and compare the replies; False when they differ."""
        await self.clock.wait_for(step.ts)
        expectation = Expectation.build(self.engine, self.replayer, step)
        if step.kind == "greeting":
            got = await self.greet(step)
        else:
            got = await self.turn(step)
        _, offline = self.replayer.check(step)  # carries the local state on, for the next expectation
        self.outcome.steps += 1
        if expectation.differs(got):
            self._diverge(step, Aspect("replies", expectation.replies, [_wire_reply(f) for f in got]))
            if offline is not None:
                self.outcome.notes.append(f"the local flows differ from the log at step {step.number} too")
            return False
        return True

    # --- the protocol ------------------------------------------------------------------------
    async def connect(self, hello: dict) -> dict:
        if self.conn is not None:
            self.conn.close()
        self.conn = await asyncio.wait_for(
            websocket_connect(HTTPRequest(self.url, connect_timeout=self.timeout)), self.timeout)
        await self.send(hello)
        return (await self.read_until(lambda frame: frame.get("type") == "welcome"))[-1]

    async def greet(self, step: Step) -> list[dict]:
        welcome = await self.connect({"type": "hello", **({"lang": step.lang} if step.lang else {})})
        self.token = welcome.get("resume")
        return await self.drain()

    async def reconnect(self, mark: Mark) -> None:
        if self.token is None:
            return
        hello = {"type": "hello", "resume": self.token, "last_seq": self.last_seq}
        if isinstance(mark.record.get("lang"), str):
            hello["lang"] = mark.record["lang"]
        welcome = await self.connect(hello)
        if not welcome.get("resumed"):
            self.resume_failed = mark
        self.token = welcome.get("resume") or self.token
        await self.drain()

    async def drain(self) -> list[dict]:
        """The replies sent so far: a ping is answered after everything before it."""
        frames = await self.request({"type": "ping"}, lambda frame: frame.get("type") == "pong")
        return [frame for frame in frames if frame.get("type") == "reply"]

    async def turn(self, step: Step) -> list[dict]:
        frame_id = f"replay-{step.number}"
        if step.kind == "action":
            frame = {"type": "action", "id": frame_id, "name": step.action}
        elif step.secret:
            frame = {"type": "message", "id": frame_id, "text": await self.password(step)}
        else:
            frame = {"type": "message", "id": frame_id, "text": step.text}
        frames = await self.request(frame, lambda f: f.get("type") == "ack" and f.get("id") == frame_id)
        if step.secret:
            for user in self.passwords.remember(step, self.pending_password):
                if user in self.registrations:
                    self.registrations[user].set()
        return [f for f in frames if f.get("type") == "reply" and f.get("in_reply_to") == frame_id]

    async def request(self, frame: dict, done) -> list[dict]:
        """Send a frame and read up to the answer that `done` recognises; resend after a rate limit."""
        while True:
            await self.send(frame)
            frames = await self.read_until(lambda f: done(f) or f.get("type") == "error")
            last = frames[-1]
            if last.get("type") != "error":
                return frames
            if last.get("code") != "rate_limited":
                raise _Broken(f"the server answered error {last.get('code')}: {last.get('message')}")
            await asyncio.sleep(RATE_LIMIT_PAUSE)

    async def password(self, step: Step) -> str:
        """What to type for a recorded password (see chatbot.replay.expect.Passwords)."""
        for effect in step.effects:
            result = effect.get("result")
            if effect.get("name") == "authenticate" and isinstance(result, dict) and result.get("ok"):
                event = self.registrations.get(username_key(str(result.get("user"))))
                if event is not None:  # registered by a session of this replay: wait until it is done
                    try:
                        await asyncio.wait_for(event.wait(), self.timeout)
                    except asyncio.TimeoutError:
                        pass
        text = self.passwords.choose(step, self.replayer.state, self.pending_password)
        if not any(e.get("name") in ("secrets_match", "authenticate") for e in step.effects):
            self.pending_password = text  # a new password, confirmed by the next turn
        return text

    async def send(self, frame: dict) -> None:
        assert self.conn is not None
        await self.conn.write_message(json.dumps(frame, ensure_ascii=False))

    async def read_until(self, last) -> list[dict]:
        assert self.conn is not None
        frames = []
        while True:
            raw = await asyncio.wait_for(self.conn.read_message(), self.timeout)
            if raw is None:
                # A close without a code, or without a close frame, leaves nothing to show.
                said = " ".join(str(part) for part in (self.conn.close_code, self.conn.close_reason) if part)
                raise _Broken("the server closed the connection" + (f" ({said})" if said else ""))
            frame = json.loads(raw)
            frames.append(frame)
            if frame.get("type") == "auth":
                self.token = frame.get("resume") or self.token
            if isinstance(frame.get("seq"), int) and frame.get("type") in ("reply", "user"):
                self.last_seq = max(self.last_seq, frame["seq"])
            if last(frame):
                return frames

    # --- results -----------------------------------------------------------------------------
    def _diverge(self, step: Step | None, aspect: Aspect | None = None, *, problem: str | None = None) -> None:
        if step is None:
            step = self.session.steps[0]
        self.outcome.status = DIVERGED
        self.outcome.divergence = Divergence(step, [aspect] if aspect else [], problem)

    def _incomplete(self, reason: str) -> Outcome:
        self.outcome.status = INCOMPLETE
        self.outcome.reason = reason
        return self.outcome
