"""Sessions: creating, resuming and running conversations, one turn at a time.

A session outlives connections.  Its state lives in the database; while it has
connections (and for a while after) it is also held in memory as a
`LiveSession`.  Turns of one session run one at a time in arrival order,
whichever connection sent them, and a reply or `ack` is sent only after
everything the turn changed is committed.

The transport hands this module `Peer`s (see `chatbot.live`); this module
knows nothing of WebSockets.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from concurrent.futures import Executor, Future
from typing import Any, Callable

from chatbot import cluster
from chatbot.dialogs import Action, Engine, LocalEnvironment, PatternTimeout, SessionState, Text, TurnResult
from chatbot.dialogs.engine import SECRET_MASK
from chatbot.errors import StorageError
from chatbot.live import LiveSession, Peer, iso, new_token, token_hash
from chatbot.logs import EventLog
from chatbot.metrics import Metrics
from chatbot.protocol import error_frame
from chatbot.storage import HistoryRecord, SessionConflict, SessionGone, SessionRecord, Store, TurnWrite
from chatbot.turnlog import log_turn, login_outcome

#: How often a turn is retried when another node changed its session meanwhile.
CONFLICT_RETRIES = 100


class SessionRefused(Exception):
    """A new session was not started: its client started too many (see SessionManager.attach)."""


class SessionManager:
    def __init__(self, *, engine: Engine, store: Store, env: LocalEnvironment, events: EventLog,
                 metrics: Metrics, executor: Executor, idle_expiry: float, max_age: float,
                 evict_after: float, history_limit: int = 500, clock=time.time,
                 node: str | None = None, shared: bool = False) -> None:
        self.engine = engine
        self.store = store
        self.env = env
        self.events = events
        self.metrics = metrics
        self.executor = executor
        self.idle_expiry = idle_expiry
        self.max_age = max_age
        self.evict_after = evict_after
        self.history_limit = history_limit
        self.clock = clock
        self.live: dict[str, LiveSession] = {}
        self.by_token: dict[str, str] = {}
        #: Turn writes sent to the store and the loop futures waiting for them.
        self._saving: list[tuple[Future, asyncio.Future]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        #: This process's name among the nodes sharing the database.
        self.node = node or cluster.new_node_id()
        #: Other nodes may change sessions too: publish each turn and re-read sessions on resume.
        self.shared = shared

    def start(self) -> None:
        """Call on the event loop once the store is open."""
        self._loop = loop = asyncio.get_running_loop()

        def saved() -> None:  # the store commits on this loop or on a thread of its own
            try:
                on_loop = asyncio.get_running_loop() is loop
            except RuntimeError:
                on_loop = False
            if on_loop:
                self._saved()
            elif not loop.is_closed():  # a store closed after its loop: no turn waits any more
                loop.call_soon_threadsafe(self._saved)

        self.store.after_each_batch(saved)

    def _saved(self) -> None:
        """A batch of writes was committed (or failed): wake the turns waiting for theirs."""
        waiting = []
        for done, waiter in self._saving:
            if not done.done():
                waiting.append((done, waiter))
            elif not waiter.done():
                error = done.exception()
                waiter.set_exception(error) if error else waiter.set_result(None)
        self._saving = waiting

    async def _save(self, write: TurnWrite) -> None:
        """Store a turn; return once it is committed (the loop is woken once per batch, not per turn)."""
        done = self.store.save_turn(write)
        if self._loop is None:
            await asyncio.wrap_future(done)
            return
        waiter = self._loop.create_future()
        self._saving.append((done, waiter))
        await waiter

    # --- attaching connections -----------------------------------------------------------
    async def attach(self, peer: Peer, hello: dict, may_create: Callable[[], bool] = lambda: True) -> LiveSession:
        """Resume the session of `hello["resume"]` or start a new one, and greet the peer.

        `may_create` is asked before a new session is started; when it says no, SessionRefused."""
        if hello.get("resume"):
            hashed = token_hash(hello["resume"])
            live = await self._find(hashed)
            if live is not None:
                async with live.lock:
                    if self.shared:  # other nodes may have moved it on: show this session's tabs what they said
                        await self._catch_up(live)
                    # A login or logout that held the lock meanwhile rotated the token, or the session left
                    # memory: the token no longer opens it, and this peer would miss the new one.
                    if live.token_hash == hashed and self.live.get(live.id) is live:
                        resent = await self._greet(peer, live, hello)
                        self.metrics.resumes.inc()
                        self.metrics.resent_replies.inc(resent)
                        self.events.event("session.resumed", session=live.id, conn=peer.conn_id,
                                          user=live.state.user, lang=live.state.lang, seq=live.seq, resent=resent)
                        return live
        if not may_create():
            raise SessionRefused("sessions: too many new sessions from this client's address")
        return await self._create(peer, hello.get("lang"))

    async def _greet(self, peer: Peer, live: LiveSession, hello: dict) -> int:
        """Welcome a peer that resumed `live` (under its lock); return how many replies were resent."""
        lang = hello.get("lang")
        if lang in self.engine.languages and lang != live.state.lang:
            live.state.lang = lang
            await self._save_language(live)
        peer.send(self._welcome(live, hello["resume"], resumed=True))
        resent = 0
        if hello.get("history"):
            peer.send(await self._history_frame(live, None, hello["history"]))
        elif "last_seq" in hello:
            resent = await self._resend(peer, live, hello["last_seq"])
        live.peers.add(peer)
        live.detached_at = None
        return resent

    def detach(self, peer: Peer, live: LiveSession | None) -> None:
        if live is None:
            return
        live.peers.discard(peer)
        if not live.peers:
            live.detached_at = self.clock()

    async def _find(self, hashed: str) -> LiveSession | None:
        session_id = self.by_token.get(hashed)
        live = self.live.get(session_id) if session_id else None
        if live is None or self.shared:
            record = await self._run(self.store.find_session_by_token, hashed)
            if record is None:
                if live is not None:  # another node rotated the token
                    self.by_token.pop(hashed, None)
                return None
            live = self.live.get(record.id)
            if live is None:
                processed = await self._run(self.store.recent_processed, record.id)
                live = self.live.get(record.id) or self._adopt(record, processed)
            updated_at = max(live.updated_at, record.updated_at)
        else:
            updated_at = live.updated_at
        now = self.clock()
        reason = ("idle" if now - updated_at > self.idle_expiry else
                  "absolute" if now - live.created_at > self.max_age else None)
        if reason and await self._expire(live, reason):
            return None
        return live

    async def _expire(self, live: LiveSession, reason: str) -> bool:
        """End a session a resume found expired, for its connected tabs too; False if a turn renewed it."""
        async with live.lock:
            if self.live.get(live.id) is not live:  # ended while this waited for the lock
                return True
            # Out of the store as well: a tab still connected must not store its next turn in it,
            # which would make the token resume it again, as a second copy beside that tab's.
            try:
                deleted = await self.delete_expired()
                if deleted:  # this one and any other past its expiry, as the hourly clean-up would
                    self.events.event("sessions.deleted", count=deleted, reason="expired")
                if await self._run(self.store.load_session, live.id) is not None:
                    return False  # a turn in flight, here or on another node, kept it alive
            except StorageError as error:  # the tabs are closed all the same; the hourly clean-up deletes it
                self.events.warning("sessions.expiry_failed", reason=str(error))
            self._end_expired(live, reason)
            return True

    def _adopt(self, record: SessionRecord, processed: list[tuple[str, int, int]]) -> LiveSession:
        state = SessionState(flow=record.flow, state=record.state, slots=dict(record.slots), lang=record.lang,
                             user=record.user, flow_version=record.flow_version)
        live = LiveSession(record.id, record.token_hash, state, record.seq, record.created_at, record.updated_at,
                           detached_at=self.clock(),  # swept like any session without tabs until one attaches
                           conversation_from=record.conversation_from)
        # The store keeps as many ids as `recent` does: with them, a new id needs no look-up.
        for client_id, first, last in processed:
            live.remember(client_id, (first, last))
        self.live[live.id] = live
        self.by_token[live.token_hash] = live.id
        self.metrics.sessions_live.set(len(self.live))
        return live

    def _refresh(self, live: LiveSession, record: SessionRecord) -> None:
        """Another node moved this session on: take its state from the store."""
        live.state = SessionState(flow=record.flow, state=record.state, slots=dict(record.slots),
                                  lang=record.lang, user=record.user, flow_version=record.flow_version,
                                  secrets=live.state.secrets)
        live.seq = record.seq
        live.updated_at = record.updated_at
        live.conversation_from = record.conversation_from
        if record.token_hash != live.token_hash:
            self.by_token.pop(live.token_hash, None)
            live.token_hash = record.token_hash
            self.by_token[record.token_hash] = live.id

    def _forget(self, live: LiveSession) -> None:
        self.live.pop(live.id, None)
        self.by_token.pop(live.token_hash, None)
        self.metrics.sessions_live.set(len(self.live))

    async def _create(self, peer: Peer, lang: str | None) -> LiveSession:
        now = self.clock()
        token = new_token()
        state = self.engine.new_session(lang)
        env = self.env.for_client(peer.client_key)
        if self.engine.start_may_block():
            result = await self._run(self.engine.start, state, env)
        else:
            result = self.engine.start(state, env)
        live = LiveSession(secrets.token_hex(8), token_hash(token), result.state, 0, now, now)
        record = SessionRecord(live.id, live.token_hash, state.flow, state.state, {}, state.lang, None,
                               state.flow_version, 0, now, now)
        created = self.store.create_session(record)
        async with live.lock:
            frames = await self._commit(live, result, now, user_text=None, client_id=None, rotate=False)
            await asyncio.wrap_future(created)  # the writer keeps order: this is done already
            # Logged once stored: a replay must not meet a session the database never held.
            self.events.event("session.created", session=live.id, conn=peer.conn_id, lang=state.lang)
            self._log_turn(live, result, frames)
            # Known to the rest of the server only once stored: a failed creation leaves nothing behind.
            self.live[live.id] = live
            self.by_token[live.token_hash] = live.id
            self.metrics.sessions_live.set(len(self.live))
            peer.send(self._welcome(live, token, resumed=False))
            live.peers.add(peer)
            self._deliver(live, peer, frames)
        return live

    async def _save_language(self, live: LiveSession) -> None:
        """Store a language a reconnecting page chose: the session may leave memory before its next turn."""
        state = live.state
        # Other nodes holding the session take the language from the note, or their next turn there
        # would store their own again.
        notice = cluster.note(live.id, self.node, live.seq, live.seq, lang=state.lang) if self.shared else None
        try:
            await self._save(TurnWrite(live.id, state.flow, state.state, dict(state.slots), state.lang, state.user,
                                       state.flow_version, live.seq, self.clock(), expected_seq=live.seq,
                                       notify=notice))
        except (SessionConflict, SessionGone, StorageError) as error:
            # The page is greeted all the same: the language holds in memory, and is stored with
            # this session's next turn unless another node took one meanwhile.
            self.events.warning("session.language_not_stored", session=live.id, lang=state.lang,
                                reason=str(error))

    @staticmethod
    def _auth_frame(live: LiveSession, user: str | None, token: str) -> dict:
        frame = {"type": "auth", "user": user, "resume": token}
        if live.conversation_from:
            # Between servers the replies of the turn may come first: a tab keeps those from `since` on.
            frame["since"] = live.conversation_from
        return frame

    def _welcome(self, live: LiveSession, token: str, *, resumed: bool) -> dict:
        welcome = {"type": "welcome", "session": live.id, "resume": token, "resumed": resumed,
                   "user": live.state.user, "lang": live.state.lang, "last_seq": live.seq}
        if live.conversation_from:
            # A tab that shows entries before it shows what a user leaving ended, even if the
            # same user came back meanwhile.
            welcome["since"] = live.conversation_from
        return welcome

    # --- turns ---------------------------------------------------------------------------
    async def handle(self, peer: Peer, live: LiveSession, frame: dict) -> None:
        """Run one `message` or `action` frame through the session's dialog."""
        client_id = frame.get("id")
        started = time.perf_counter()
        try:
            async with live.lock:
                # `recent` holds what the store holds (another node's ids surface as a SessionConflict).
                done = live.recent.get(client_id) if client_id else None
                if done is not None:
                    peer.send({"type": "ack", "id": client_id, "seq": done[0]})
                    return
                typed_secret = frame["type"] == "message" and frame.get("secret") is True
                if typed_secret and self.engine.input_kind(live.state) != "password":
                    # Unless it resends a secret another node took: only the store knows that id.
                    if not (self.shared and await self._acked_from_store(peer, live, client_id)):
                        self._refuse_stale_secret(peer, live, client_id)
                    return
                secret = typed_secret or self.engine.input_kind(live.state) == "password"
                if frame["type"] == "message":
                    event: Text | Action = Text(frame["text"])
                    self.metrics.messages_in_by_kind["message"].inc()
                    self.events.event("message.in", session=live.id, conn=peer.conn_id, user=live.state.user,
                                      flow=live.state.flow, state=live.state.state, id=client_id,
                                      text="[redacted]" if secret else frame["text"], secret=secret or None)
                else:
                    event = Action(frame["name"])
                    self.metrics.messages_in_by_kind["action"].inc()
                    self.events.event("action.in", session=live.id, conn=peer.conn_id, user=live.state.user,
                                      flow=live.state.flow, state=live.state.state, id=client_id,
                                      name=frame["name"])
                for attempt in range(CONFLICT_RETRIES):
                    if typed_secret and attempt and self.engine.input_kind(live.state) != "password":
                        self._refuse_stale_secret(peer, live, client_id)  # another node's turn moved on
                        return
                    try:
                        frames = await self._turn(peer, live, event, client_id)
                        break
                    except SessionGone:
                        self._end_expired(live, "deleted")
                        return
                    except PatternTimeout as timeout:
                        self._refuse_slow_text(peer, live, client_id, timeout)
                        return
                    except SessionConflict:
                        # Another node took a turn of this session (or processed this very id) first:
                        # show its turn here, then try again from where it left the session.
                        await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2 ** attempt)))
                        await self._catch_up(live)
                        # Only the store knows whether another node processed this very id.
                        if await self._acked_from_store(peer, live, client_id):
                            return
                else:
                    raise SessionConflict(f"sessions: {live.id}: gave up after {CONFLICT_RETRIES} conflicts")
                self._deliver(live, peer, frames)
        finally:
            self.metrics.reply_latency.observe(time.perf_counter() - started)

    async def _acked_from_store(self, peer: Peer, live: LiveSession, client_id: str | None) -> bool:
        """Ack `client_id` if the store has it processed (by another node); return whether it did."""
        done = await self._run(self.store.processed, live.id, client_id) if client_id else None
        if done is None:
            return False
        live.remember(client_id, done)
        peer.send({"type": "ack", "id": client_id, "seq": done[0]})
        return True

    async def _turn(self, peer: Peer, live: LiveSession, event: Text | Action,
                    client_id: str | None) -> list[tuple[str, dict]]:
        env = self.env.for_client(peer.client_key)
        if self.engine.may_block(live.state):
            result = await self._run(self.engine.handle, live.state, event, env)
        else:
            result = self.engine.handle(live.state, event, env)
        user_text = None
        if isinstance(event, Text):
            user_text = SECRET_MASK if result.secret_input else event.text
        frames = await self._commit(live, result, self.clock(), user_text=user_text, client_id=client_id,
                                    rotate=result.auth_changed, secret=result.secret_input)
        self._log_turn(live, result, frames)
        return frames

    def _refuse_stale_secret(self, peer: Peer, live: LiveSession, client_id: str | None) -> None:
        """A password typed into a box another tab's turn made stale: kept nowhere, shown to no one."""
        self.events.warning("message.secret_refused", session=live.id, conn=peer.conn_id, id=client_id,
                            flow=live.state.flow, state=live.state.state)
        self.metrics.errors.labels(code="secret_not_expected").inc()
        peer.send(error_frame("secret_not_expected",
                              "the bot no longer asks for a password; what was typed was not kept", client_id))

    def _refuse_slow_text(self, peer: Peer, live: LiveSession, client_id: str | None,
                          timeout: PatternTimeout) -> None:
        """A flow's pattern ran out of time on this text: the turn is dropped, and its author told."""
        self.events.warning("turn.pattern_timeout", session=live.id, conn=peer.conn_id, id=client_id,
                            flow=live.state.flow, state=live.state.state, pattern=timeout.where,
                            chars=timeout.chars)
        self.metrics.errors.labels(code="pattern_timeout").inc()
        peer.send(error_frame("pattern_timeout", "the bot took too long to read this text; it was not processed",
                              client_id))

    def _end_expired(self, live: LiveSession, reason: str) -> None:
        """The session expired and was deleted: the tabs still connected to it must start anew."""
        self.events.event("session.expired", session=live.id, reason=reason)
        self._forget(live)
        for peer in list(live.peers):
            peer.send(error_frame("session_expired", "this session expired; reconnect to start a new one"))
            peer.close(1000, "session expired")
        live.peers.clear()

    async def _commit(self, live: LiveSession, result: TurnResult, now: float, *, user_text: str | None,
                      client_id: str | None, rotate: bool, secret: bool = False) -> list[tuple[str, dict]]:
        """Store the turn, then update the live session; return the frames to deliver (audience, frame).

        The caller logs the turn (`_log_turn`) once it is stored."""
        seq = live.seq
        entries: list[HistoryRecord] = []
        frames: list[tuple[str, dict]] = []
        ack_seq = None
        if user_text is not None:
            seq += 1
            ack_seq = seq
            meta = {"id": client_id} if client_id else {}
            if secret:
                meta["secret"] = True
            entries.append(HistoryRecord(seq, "user", user_text, meta, now))
            # As `_frame` shows the entry to a resuming tab: no `id` when the client gave none.
            frames.append(("others", {"type": "user", "seq": seq, **meta, "text": user_text}))
        for reply in result.replies:
            seq += 1
            frame = {"type": "reply", "seq": seq, **reply.to_dict()}
            if client_id:
                frame["in_reply_to"] = client_id
            entries.append(HistoryRecord(seq, "bot", reply.text,
                                         {k: v for k, v in frame.items() if k in ("buttons", "input", "in_reply_to")},
                                         now))
            frames.append(("all", frame))
        token = new_token() if rotate else None
        hashed = token_hash(token) if token else None
        state = result.state
        # A user leaving (a logout, or an action logging another user in) ends the conversation:
        # what came before this turn's replies is not for the next person at that browser (the
        # logs keep it for the operator).
        user_left = rotate and live.state.user is not None and state.user != live.state.user
        forget_before = live.seq + (2 if user_text is not None else 1) if user_left else None
        ack_seq = ack_seq if ack_seq is not None else seq
        notice = None
        if self.shared:
            auth = {"user": state.user, "resume": token} if token else None
            notice = cluster.note(live.id, self.node, live.seq, seq, auth)
        write = TurnWrite(live.id, state.flow, state.state, dict(state.slots), state.lang, state.user,
                          state.flow_version, seq, now, token_hash=hashed, entries=tuple(entries),
                          client_id=client_id, reply_seq_range=(ack_seq, seq) if client_id else None,
                          expected_seq=live.seq, notify=notice, forget_before=forget_before)
        committing = time.perf_counter()
        await self._save(write)
        self.metrics.db_commit.observe(time.perf_counter() - committing)
        live.state = state
        live.seq = seq
        live.updated_at = now
        if forget_before is not None:
            live.conversation_from = forget_before
        if client_id:
            live.remember(client_id, (ack_seq, seq))
        if hashed:
            self.by_token.pop(live.token_hash, None)
            live.token_hash = hashed
            live.token_unsent = False
            self.by_token[hashed] = live.id
            # Before the replies: a page shows who is logged in by the time it shows "welcome".
            first_reply = next((i for i, (_, frame) in enumerate(frames) if frame["type"] == "reply"), len(frames))
            frames.insert(first_reply, ("all", self._auth_frame(live, state.user, token)))
        if client_id:
            frames.append(("self", {"type": "ack", "id": client_id, "seq": ack_seq}))
        return frames

    def _deliver(self, live: LiveSession, sender: Peer, frames: list[tuple[str, dict]]) -> None:
        for audience, frame in frames:
            if audience == "self":
                sender.send(frame)
                continue
            for peer in list(live.peers):
                if audience == "all" or peer is not sender:
                    peer.send(frame)
        # A turn's frames leave now, in one write per connection: under load, a round of the loop
        # (until the queued frames would leave by themselves) takes milliseconds.
        sender.send_queued()
        for peer in live.peers:
            peer.send_queued()
        self.metrics.messages_out.inc(sum(1 for _, frame in frames if frame["type"] == "reply"))

    def _log_turn(self, live: LiveSession, result: TurnResult, frames: list[tuple[str, dict]]) -> None:
        for step in result.transitions:
            self.metrics.transitions_in(step["flow"]).inc()
        for account in result.account_events:
            if account["event"] == "account.login":
                self.metrics.logins.labels(result=login_outcome(account)).inc()
        log_turn(self.events, live.id, result, (frame for _, frame in frames if frame["type"] == "reply"))

    # --- turns taken on other nodes ---------------------------------------------------------
    def on_note(self, body: dict) -> None:
        """A turn was committed somewhere (see chatbot.cluster): bring local connections up to date."""
        if body.get("n") == self.node:
            return
        live = self.live.get(body.get("s", ""))
        if live is not None and (body.get("b", 0) > live.seq or body.get("auth") or body.get("lang")):
            asyncio.get_running_loop().create_task(self._relay(live, body.get("auth")))

    def catch_up(self) -> None:
        """After missing notes (the listener reconnected): check every session held here."""
        loop = asyncio.get_running_loop()
        for live in list(self.live.values()):
            if live.peers:
                loop.create_task(self._relay(live, None, missed=True))

    async def _relay(self, live: LiveSession, auth: dict | None, *, missed: bool = False) -> None:
        async with live.lock:
            await self._catch_up(live, auth)
            # Found by this catch-up, or by an earlier one (a turn here that met the other node's
            # in the store), while the note that carried the new token was missed: only its hash
            # is stored, so the tabs here can learn no token but a new one, which reaches every node's tabs.
            if live.token_unsent and missed and live.peers:
                await self._reissue_token(live)

    async def _catch_up(self, live: LiveSession, auth: dict | None = None) -> None:
        """Bring a session held here up to the store, sending what other nodes added to its peers.

        `auth` is the new token a note of another node carried: if it is the session's token now,
        the peers get it before the replies, as on the node that took the turn. A token changed
        with no `auth` for it marks the session `token_unsent`.
        """
        record = await self._run(self.store.load_session, live.id)
        if record is None:
            return
        rows = []
        if record.seq > live.seq:
            # Only up to the seq of the state read: later entries belong to a state not read yet.
            rows = await self._run(self.store.history, live.id, after_seq=live.seq, before_seq=record.seq + 1,
                                   limit=self.history_limit)
        rotated = record.token_hash != live.token_hash
        if record.seq > live.seq or rotated or record.lang != live.state.lang:
            self._refresh(live, record)
        frames = [self._frame(row) for row in rows]
        if auth is not None and token_hash(auth.get("resume") or "") == live.token_hash:
            frames.insert(0, self._auth_frame(live, auth.get("user"), auth["resume"]))
            live.token_unsent = False
        elif rotated:
            live.token_unsent = True
        for frame in frames:
            for peer in list(live.peers):
                peer.send(frame)

    async def _reissue_token(self, live: LiveSession) -> None:
        """Give the session a new token, and publish it to its tabs here and on every node."""
        token = new_token()
        hashed = token_hash(token)
        state = live.state
        auth = {"user": state.user, "resume": token}
        try:
            await self._save(TurnWrite(live.id, state.flow, state.state, dict(state.slots), state.lang, state.user,
                                       state.flow_version, live.seq, self.clock(), token_hash=hashed,
                                       expected_seq=live.seq,
                                       notify=cluster.note(live.id, self.node, live.seq, live.seq, auth)))
        except (SessionConflict, SessionGone, StorageError) as error:
            # Another node moved the session on meanwhile; its note brings these tabs along.
            self.events.warning("session.token_not_reissued", session=live.id, reason=str(error))
            return
        self.by_token.pop(live.token_hash, None)
        live.token_hash = hashed
        live.token_unsent = False
        self.by_token[hashed] = live.id
        self.events.event("session.token_reissued", session=live.id, user=state.user)
        for peer in list(live.peers):
            peer.send(self._auth_frame(live, state.user, token))

    # --- history -------------------------------------------------------------------------
    async def history(self, peer: Peer, live: LiveSession, frame: dict) -> None:
        # Under the lock: a page that clears its display at a logout's `auth` must get a history
        # read before that logout ahead of the `auth`, never after it.
        async with live.lock:
            peer.send(await self._history_frame(live, frame.get("before_seq"), frame.get("limit", 50)))

    async def _history_frame(self, live: LiveSession, before_seq: int | None, limit: int) -> dict:
        before = (live.seq + 1) if before_seq is None else before_seq
        rows = await self._run(self.store.history, live.id, before_seq=before, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[-limit:] if limit else []
        return {"type": "history", "entries": [self._entry(row) for row in rows], "last_seq": live.seq,
                "more": more}

    @staticmethod
    def _frame(row: HistoryRecord) -> dict:
        """A stored entry as the live frame that first carried it: `user` or `reply`."""
        if row.role == "user":
            return {"type": "user", "seq": row.seq, "text": row.text, **row.meta}
        return {"type": "reply", "seq": row.seq, "text": row.text, "buttons": [], "input": "text", **row.meta}

    @staticmethod
    def _entry(row: HistoryRecord) -> dict:
        entry: dict[str, Any] = {"seq": row.seq, "from": row.role, "text": row.text}
        entry.update(row.meta)
        entry["ts"] = iso(row.created_at)
        return entry

    async def _resend(self, peer: Peer, live: LiveSession, last_seq: int) -> int:
        if last_seq >= live.seq:
            return 0
        rows = await self._run(self.store.history, live.id, after_seq=last_seq, before_seq=live.seq + 1,
                               limit=self.history_limit)
        # What other tabs typed meanwhile too: a page shows it once, matching it by seq and id.
        for row in rows:
            peer.send(self._frame(row))
        return sum(1 for row in rows if row.role == "bot")

    # --- housekeeping --------------------------------------------------------------------
    def sweep(self) -> int:
        """Drop from memory the sessions nobody has been connected to for a while."""
        now = self.clock()
        idle = [live for live in self.live.values()
                if not live.peers and live.detached_at is not None and now - live.detached_at >= self.evict_after
                and not live.lock.locked()]
        for live in idle:
            self._forget(live)
        return len(idle)

    async def delete_expired(self) -> int:
        now = self.clock()
        return await self._run(self.store.delete_expired, now - self.idle_expiry, now - self.max_age)

    async def _run(self, func, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: func(*args, **kwargs))
