"""The WebSocket server: Tornado handlers for the chat socket, the page, health and metrics.

`ChatServer` owns everything a running server needs (settings, store, engine,
sessions, logs, metrics) and hands it to the handlers through
`initialize()`; nothing here is a module global.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import itertools
import math
import os
import secrets
import signal
import struct
import time
import zlib
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import tornado.ioloop
import tornado.web
import tornado.websocket
from tornado.httpserver import HTTPServer
from tornado.iostream import StreamBufferFullError, StreamClosedError
from tornado.netutil import bind_sockets

from chatbot import __version__
from chatbot.accept import add_patient_accept_handler, socket_capacity
from chatbot.accounts import Accounts
from chatbot.cluster import TurnListener, listening_connection
from chatbot.config import Settings
from chatbot.dialogs import Engine, LocalEnvironment
from chatbot.errors import ConfigError, ProtocolError, StorageError
from chatbot.logs import EventLog
from chatbot.metrics import Metrics
from chatbot.protocol import MAX_HISTORY, encode, error_frame, frame_id, parse_frame
from chatbot.live import LiveSession
from chatbot.sessions import SessionManager, SessionRefused
from chatbot.storage import Store
from chatbot.storage.db import is_postgresql, masked_url, postgresql_connect_params

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
#: Allocations between two collections of the youngest generation (Python's default: 700).
GC_THRESHOLD = 20_000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
INVALID_PAYLOAD = 1007
POLICY = 1008
TRY_AGAIN_LATER = 1013
#: Bytes a connection may leave unsent (its client not reading them) and still be answered a
#: `history` frame; past it, one is refused as too fast. Without a bound, a client that asks and
#: never reads would grow the server's memory without end.
UNSENT_LIMIT = 4 * 1024 * 1024
#: Bytes of text a character may take in a frame (UTF-8), for the largest history frame.
BYTES_PER_CHAR = 4
#: Seconds a stop gives the store to commit what is queued, at least (see ChatServer.stop).
STORE_CLOSE_LEAST = 1.0
#: Seconds between two `server.full` warnings while connections keep being turned away.
FULL_LOG_INTERVAL = 10.0
#: Seconds between two write-downs of a worker's read values (`chatbot_db_failing`) for the others' scrapes.
METRICS_REFRESH = 1.0
#: Seconds a client has to send its request's headers (and a kept-alive connection may idle): a
#: connection that never speaks would otherwise hold a descriptor for Tornado's default hour.
HEADER_TIMEOUT = 30.0
#: Sockets kept for page loads and WebSocket handshakes when the open-files limit caps WebSockets.
HTTP_ROOM = 16
#: Client addresses whose new sessions are counted at once (see ChatServer.may_start_session).
ADDRESSES_TRACKED = 100_000


class TolerantProtocol(tornado.websocket.WebSocketProtocol13):
    """Tornado's WebSocket protocol, with these changes.

    A text frame that is not valid UTF-8 (once decompressed, with permessage-deflate)
    goes to the handler as bytes: Tornado drops such a connection outright; this
    server answers with a `bad_utf8` error frame instead and keeps the connection.
    Compressed data that does not decompress (text or binary) closes with 1007, a
    reserved opcode with 1002, where Tornado cuts the socket (and, for the first,
    logs a traceback).

    `write_texts` sends several text frames with one socket write, and without
    the task `write_message` makes for each frame (a turn's reply and its ack
    are two frames). It cuts a client that leaves more unread than any reading client could
    (see ChatSocket.unsent_cut).

    `close` notes the code and reason of a close this server starts, for the log.
    """

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        # Noted for the log, unless this only answers the client's close (Tornado echoes its code).
        if not self.server_terminated and not self.client_terminated and self.handler.sent_close is None:
            self.handler.sent_close = (1000 if code is None and reason is not None else code, reason)
        super().close(code, reason)

    def write_texts(self, texts: list[str]) -> None:
        """Send each text as a frame, compressed as write_message would; raises StreamClosedError."""
        parts = []
        for text in texts:
            data = text.encode("utf-8")
            self._message_bytes_out += len(data)
            flags = 0
            if self._compressor:
                data = self._compressor.compress(data)
                flags = self.RSV1
            length = len(data)
            # A server's frames are not masked (RFC 6455, 5.1).
            if length < 126:
                header = struct.pack("BB", self.FIN | 0x1 | flags, length)
            elif length <= 0xFFFF:
                header = struct.pack("!BBH", self.FIN | 0x1 | flags, 126, length)
            else:
                header = struct.pack("!BBQ", self.FIN | 0x1 | flags, 127, length)
            parts += (header, data)
        wire = b"".join(parts)
        self._wire_bytes_out += len(wire)
        # However big this write, it is refused only when what was written before is still unsent
        # past the limit; the limit is lifted again for Tornado's own frames (a close, a pong).
        stream = self.stream
        stream.max_write_buffer_size = self.handler.unsent_cut + len(wire)
        try:
            # The write's future is not awaited: on a closed stream Tornado marks its error retrieved.
            stream.write(wire)
        except StreamBufferFullError:
            # A close frame would wait behind what the client does not read: the socket is cut.
            self.handler.sent_close = (POLICY, "the client does not read what it is sent")
            self._abort()
        finally:
            stream.max_write_buffer_size = None

    def _handle_message(self, opcode: int, data: bytes):
        if self.client_terminated:
            return None
        if opcode not in (0x1, 0x2):
            if opcode not in (0x8, 0x9, 0xA):  # reserved (RFC 6455, 5.2): Tornado would cut the socket
                self.close(PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
                self._abort()
                return None
            return super()._handle_message(opcode, data)
        if self._frame_compressed:  # as Tornado does, before the text is decoded
            try:
                data = self._decompressor.decompress(data)
            except tornado.websocket._DecompressTooLargeError:
                self.close(1009, "message too big after decompression")
                self._abort()
                return None
            except zlib.error:  # a broken stream: the frames after it cannot be read either
                self.close(INVALID_PAYLOAD, "compressed data is corrupt")
                self._abort()
                return None
        self._message_bytes_in += len(data)
        message: str | bytes = data  # a binary frame is read as its UTF-8 text (see parse_frame)
        if opcode == 0x1:
            try:
                message = data.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return self._run_callback(self.handler.on_message, message)


def listen_connector(database_url: str):
    """What opens the connection a node LISTENs on (PostgreSQL)."""
    import psycopg2

    params = postgresql_connect_params(database_url)  # with a connect_timeout (see storage.db)
    return lambda: psycopg2.connect(**params)


def check_listening(database_url: str) -> None:
    """Before workers are forked: StorageError if the database will not give a node its LISTEN
    connection (each worker would die of it at start, to be started again and again)."""
    if is_postgresql(database_url):
        listening_connection(listen_connector(database_url)).close()


def client_address(ip: str) -> str:
    """What per-address limits count by: an IPv4 address, or the /64 network of an IPv6 one.

    One IPv6 host is usually given a whole /64 and may use any address in it: counted one by
    one, its addresses would each get their own limits.
    """
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:  # not an address (a unix socket's peer): counted as it is
        return ip
    if address.version == 6 and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    if address.version == 6:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return ip


class RateLimiter:
    """A token bucket per connection: `rate` frames a second on average, `burst` at once.

    `rested` tells whether the bucket had filled up again before the last frame: the client
    had kept under the limit long enough for its earlier excess to be forgiven.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp", "rested")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self.rested = True

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.rested = self.tokens >= self.burst
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class ChatSocket(tornado.websocket.WebSocketHandler):
    def initialize(self, server: "ChatServer") -> None:
        self.server = server
        self.settings_ = server.settings
        self.conn_id = f"k{next(server.conn_ids):x}"
        self.ip = self.request.remote_ip or "?"
        #: What the per-address limits count by: the address, or an IPv6 address's /64.
        self.address = client_address(self.ip)
        # Failed logins are throttled per account and per connection (see chatbot/accounts.py).
        self.client_key = f"conn:{self.conn_id}"
        self.live: LiveSession | None = None
        self.limiter = RateLimiter(self.settings_.rate_limit, self.settings_.rate_burst)
        self.strikes = 0
        #: Unsent bytes past which the connection is cut: a client that reads, however slowly, has
        #: at most UNSENT_LIMIT unread when it asks for history (or is refused), plus that answer
        #: (the largest history frame) and the small frames behind it.
        self.unsent_cut = 2 * UNSENT_LIMIT + MAX_HISTORY * self.settings_.max_text_chars * BYTES_PER_CHAR
        self.opened_at = 0.0
        self.event_loop = asyncio.get_running_loop()
        self.outbox: list[str] = []
        #: (code, reason) of the close this server started, if it did: `close_code` and
        #: `close_reason` are what the client sent, and a client cut off sends nothing.
        self.sent_close: tuple[int | None, str | None] | None = None

    # --- handshake policy ----------------------------------------------------------------
    def check_origin(self, origin: str) -> bool:
        allowed = self.settings_.origins
        if "*" in allowed:
            return True
        if allowed:
            return origin.rstrip("/") in allowed
        return urlsplit(origin).netloc.lower() == self.request.host.lower()

    def get_compression_options(self):
        return {} if self.settings_.deflate else None

    def get_websocket_protocol(self):
        if self.request.headers.get("Sec-WebSocket-Version") != "13":
            return None
        params = tornado.websocket._WebSocketParams(
            ping_interval=self.ping_interval, ping_timeout=self.ping_timeout,
            max_message_size=self.max_message_size, compression_options=self.get_compression_options())
        return TolerantProtocol(self, False, params)

    # --- lifecycle -----------------------------------------------------------------------
    def open(self) -> None:
        server = self.server
        self.opened_at = time.monotonic()
        # Frames leave as soon as they are written: without this, Nagle's algorithm holds a write
        # that follows another unacknowledged one until the client's delayed ACK, some 40 ms later.
        self.set_nodelay(True)
        server.events.event("conn.open", conn=self.conn_id, ip=self.ip,
                            origin=self.request.headers.get("Origin"))
        if len(server.connections) >= server.max_connections:
            self._refuse(TRY_AGAIN_LATER, "server full", "max_connections")
            return
        if server.per_ip[self.address] >= self.settings_.max_connections_per_ip:
            self._refuse(POLICY, "too many connections from your address", "max_connections_per_ip")
            return
        server.connections.add(self)
        server.per_ip[self.address] += 1
        server.metrics.connections_open.set(len(server.connections))

    def _refuse(self, code: int, reason: str, kind: str) -> None:
        self.server.events.warning("ratelimit.hit", conn=self.conn_id, ip=self.ip, kind=kind)
        self.close(code, reason)

    def on_close(self) -> None:
        server = self.server
        if self in server.connections:
            server.connections.discard(self)
            server.per_ip[self.address] -= 1
            if server.per_ip[self.address] <= 0:
                del server.per_ip[self.address]
            server.metrics.connections_open.set(len(server.connections))
        server.sessions.detach(self, self.live)
        by, (code, reason) = ("server", self.sent_close) if self.sent_close else ("client", (self.close_code,
                                                                                            self.close_reason))
        server.events.event("conn.close", conn=self.conn_id, session=self.live.id if self.live else None,
                            by=by, code=code, reason=reason or None,
                            duration_s=round(time.monotonic() - self.opened_at, 3))

    def send(self, frame: dict) -> None:
        """Queue a frame; the frames queued in one round of the event loop leave in one write."""
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        self.outbox.append(encode(frame))
        if len(self.outbox) == 1:
            self.event_loop.call_soon(self.send_queued)

    def send_queued(self) -> None:
        texts, self.outbox = self.outbox, []
        connection = self.ws_connection
        if not texts or connection is None or connection.is_closing():
            return
        try:
            connection.write_texts(texts)
        except StreamClosedError:
            pass

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        self.send_queued()  # what was sent before the close frame goes before it
        super().close(code, reason)

    # --- frames --------------------------------------------------------------------------
    async def on_message(self, message: str | bytes) -> None:
        if self not in self.server.connections:
            return
        if self.sent_close is not None:
            # Frames the client sent before it read the close frame: a closing connection takes no
            # more, and a client resends what was not acked once it reconnects.
            return
        if self.server.stopping:
            # Not processed, so never acknowledged: the client sends it again once it reconnects
            # (to this server restarted, or to another node), and the drain is not held up by it.
            return
        if not self.limiter.allow():
            self._rate_limited(frame_id(message))
            return
        if self.limiter.rested:
            # Strikes count a flood, not a page's occasional burst over a day of use.
            self.strikes = 0
        try:
            frame = parse_frame(message, max_text_chars=self.settings_.max_text_chars)
        except ProtocolError as err:
            self._protocol_error(err)
            return
        self.server.in_flight += 1
        try:
            await self._dispatch(frame)
        except StorageError as error:  # the database failed (restarting, disk full): no bug, no traceback
            self.server.events.warning("storage.failed", conn=self.conn_id,
                                       session=self.live.id if self.live else None, reason=str(error))
            self._failed(frame)
        except Exception:  # a bug: log it with its traceback, tell the client, keep serving
            self.server.events.error("error.unhandled", exc_info=True, conn=self.conn_id,
                                     session=self.live.id if self.live else None)
            self._failed(frame)
        finally:
            self.server.in_flight -= 1

    def _failed(self, frame: dict) -> None:
        self.server.metrics.errors.labels(code="internal_error").inc()
        client_id = frame.get("id") if isinstance(frame.get("id"), str) else None
        self.send(error_frame("internal_error", "the server failed to handle this frame; it was not processed",
                              client_id))

    async def _dispatch(self, frame: dict) -> None:
        kind = frame["type"]
        sessions = self.server.sessions
        if kind == "ping":
            self.send({"type": "pong"})
            return
        if kind == "hello":
            if self.live is not None:
                self._protocol_error(ProtocolError("bad_field", "hello: this connection already has a session"))
                return
            self.live = await self._attach(frame)
            self._detach_if_closed()
            return
        if self.live is None:
            self.live = await self._attach({})
            self._detach_if_closed()
            if self.live is None:
                return
        if kind == "history":
            if self._unsent() > UNSENT_LIMIT:
                self._rate_limited(None, reason="history: what was sent before is not read yet; this "
                                   "frame was dropped", kind="unread")
                return
            await sessions.history(self, self.live, frame)
        else:
            await sessions.handle(self, self.live, frame)

    async def _attach(self, hello: dict) -> LiveSession | None:
        try:
            return await self.server.sessions.attach(self, hello, lambda: self.server.may_start_session(self.address))
        except SessionRefused:
            # Each new session is stored for weeks: an address opening them in a loop would fill the disk.
            self.server.events.warning("ratelimit.hit", conn=self.conn_id, ip=self.ip, kind="new_sessions")
            self.server.metrics.errors.labels(code="too_many_sessions").inc()
            self.send(error_frame("too_many_sessions", "too many new sessions from your address; try again later"))
            self.close(TRY_AGAIN_LATER, "too many new sessions")
            return None

    def _detach_if_closed(self) -> None:
        """The connection may have been dropped (ping timeout) while its session was being attached."""
        if self.ws_connection is None or self.ws_connection.is_closing():
            self.server.sessions.detach(self, self.live)

    def _protocol_error(self, err: ProtocolError) -> None:
        self.server.metrics.errors.labels(code=err.code).inc()
        self.server.events.warning("protocol.error", conn=self.conn_id, session=self.live.id if self.live else None,
                                   code=err.code, detail=err.message)
        self.send(error_frame(err.code, err.message, err.in_reply_to))

    def _unsent(self) -> int:
        """Bytes written to this connection that its client has not taken yet."""
        connection = self.ws_connection
        # Tornado keeps no public count of it; its stream's buffer holds what the socket did not take.
        return len(connection.stream._write_buffer) if connection is not None else 0

    def _rate_limited(self, refused_id: str | None, *, reason: str | None = None, kind: str = "frames") -> None:
        self.strikes += 1
        self.server.events.warning("ratelimit.hit", conn=self.conn_id, ip=self.ip, kind=kind, strikes=self.strikes)
        self.server.metrics.errors.labels(code="rate_limited").inc()
        if self.strikes >= self.settings_.rate_strikes:
            self.close(POLICY, "rate limit exceeded")
            return
        # With the frame's id, a client knows which frame to send again later.
        self.send(error_frame("rate_limited", reason or f"too many frames: at most {self.settings_.rate_limit:g} a "
                              "second on average; this frame was dropped", refused_id))


class HealthHandler(tornado.web.RequestHandler):
    def initialize(self, server: "ChatServer") -> None:
        self.server = server

    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        store = self.server.store
        database = "failing" if store.database_failing else "stuck" if store.database_stuck else "ok"
        if database != "ok" or self.server.stopping:
            self.set_status(503)  # messages are answered with errors, or not at all: send users elsewhere
        status = "stopping" if self.server.stopping else "failing" if database != "ok" else "ok"
        self.write({"status": status, "database": database, "version": __version__,
                    "node": self.server.sessions.node, "pid": os.getpid(),
                    "connections": len(self.server.connections), "sessions": len(self.server.sessions.live)})

    def head(self) -> None:  # what many load balancers send; Tornado leaves the body out
        self.get()


class MetricsHandler(tornado.web.RequestHandler):
    def initialize(self, server: "ChatServer") -> None:
        self.server = server

    def get(self) -> None:
        body, content_type = self.server.metrics.render()
        self.set_header("Content-Type", content_type)
        self.write(body)


class PageHandler(tornado.web.StaticFileHandler):
    def parse_url_path(self, url_path: str) -> str:
        if "\x00" in url_path:  # no file is named so, and os.path would raise: a 500 with a traceback
            raise tornado.web.HTTPError(404)
        return super().parse_url_path(url_path)

    def set_extra_headers(self, path: str) -> None:
        # The page loads nothing from elsewhere and renders text, never HTML.
        self.set_header("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "
                                                   "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                                                   "form-action 'none'; frame-ancestors 'none'")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-cache")


class PatientHTTPServer(HTTPServer):
    """An HTTPServer that keeps within the open-files limit.

    Past `capacity` open sockets (HTTP requests and WebSockets together) a new connection is
    closed at once, while there are descriptors left for the database and the logs; should the
    process run out all the same, accepting pauses (see chatbot.accept). `on_full` is told why.
    """

    capacity: float = math.inf

    def open_websockets(self) -> int:
        """WebSocket connections, which Tornado no longer counts once upgraded; the chat server sets its own."""
        return 0

    def on_full(self, reason: str) -> None:
        """Told when a connection is turned away or accepting pauses; the chat server sets its own."""

    def add_sockets(self, sockets) -> None:
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = add_patient_accept_handler(
                sock, self._handle_connection, lambda error: self.on_full(f"{error.strerror}: accepting paused"))

    def _handle_connection(self, connection, address) -> None:
        if len(self._connections) + self.open_websockets() >= self.capacity:
            connection.close()
            self.on_full(f"the open-files limit leaves room for {self.capacity} sockets")
            return
        super()._handle_connection(connection, address)


class ChatServer:
    """A configured server: build it, `start()` it, `stop()` it."""

    def __init__(self, settings: Settings, engine: Engine, events: EventLog, *, metrics: Metrics | None = None,
                 flow_hashes: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.events = events
        self.metrics = metrics or Metrics()
        self.flow_hashes = flow_hashes or {name: flow.version for name, flow in engine.flows.items()}
        self.store = Store(settings.database_url, history_limit=settings.history_limit)
        self.metrics.follow_db_failing(lambda: self.store.database_failing or self.store.database_stuck)
        self.executor = ThreadPoolExecutor(settings.blocking_threads, thread_name_prefix="chatbot-blocking")
        self.accounts = Accounts(self.store)
        #: Several processes may share a PostgreSQL database: sessions then move between them.
        self.shared = is_postgresql(settings.database_url)
        self.sessions = SessionManager(
            engine=engine, store=self.store, env=LocalEnvironment(self.accounts), events=events,
            metrics=self.metrics, executor=self.executor, idle_expiry=settings.session_idle_expiry,
            max_age=settings.session_max_age, evict_after=settings.session_evict_after,
            history_limit=settings.history_limit, shared=self.shared)
        self.listener: TurnListener | None = None
        self.connections: set[ChatSocket] = set()
        self.per_ip: Counter = Counter()
        #: A bucket of new sessions per client address, the most recently used last (bounded).
        self.new_sessions: OrderedDict[str, RateLimiter] = OrderedDict()
        self.conn_ids = itertools.count(1)
        self.http: HTTPServer | None = None
        self.port: int | None = None
        self.stopping = False
        #: Whether the stop committed every write (False: the database stopped answering; see stop).
        self.flushed = True
        #: Open WebSocket connections allowed: max_connections, or fewer if the open-files limit is lower.
        self.max_connections = settings.max_connections
        self._full_logged_at = -math.inf
        #: Frames being handled (a greeting, a turn, a history read): stop() waits for them.
        self.in_flight = 0
        self._sweeper: asyncio.Task | None = None
        self._metrics_refresher: tornado.ioloop.PeriodicCallback | None = None

    def application(self) -> tornado.web.Application:
        s = self.settings
        return tornado.web.Application(
            [
                (r"/ws", ChatSocket, {"server": self}),
                (r"/healthz", HealthHandler, {"server": self}),
                (r"/metrics", MetricsHandler, {"server": self}),
                (r"/(.*)", PageHandler, {"path": str(WEB_ROOT), "default_filename": "index.html"}),
            ],
            websocket_max_message_size=s.max_frame_bytes,
            websocket_ping_interval=s.ping_interval or None,
            websocket_ping_timeout=min(s.ping_timeout, s.ping_interval) if s.ping_interval else None,
            cookie_secret=secrets.token_hex(16),
        )

    async def start(self, sockets: list | None = None) -> int:
        """Listen (on `sockets` when a supervisor bound them) and open the store; return the port."""
        loop = asyncio.get_running_loop()
        # Before the store: a port in use is the likeliest reason not to start, and is then
        # reported before any database is created or migrated.
        bound = [] if sockets else listen(self.settings.host, self.settings.port)
        sockets = sockets or bound
        try:
            # SQLite commits in microseconds with nothing to wait for: on the loop, not a thread
            # (see storage/writer.py).
            await loop.run_in_executor(self.executor, self.store.open, None if self.shared else loop)
        except BaseException:
            for sock in bound:
                sock.close()
            raise
        if self.shared:
            try:
                await self._listen_for_other_nodes()
            except BaseException:
                await loop.run_in_executor(self.executor, self.store.close)
                for sock in bound:
                    sock.close()
                raise
        self.port = sockets[0].getsockname()[1]
        sockets_allowed = socket_capacity()
        # Below the sockets' limit, so that a WebSocket past it is told 1013 rather than cut off.
        self.max_connections = min(self.settings.max_connections, max(1, sockets_allowed - HTTP_ROOM))
        if self.max_connections < self.settings.max_connections:
            self.events.warning("server.connections_capped", wanted=self.settings.max_connections,
                                allowed=self.max_connections,
                                reason="the open-files limit (ulimit -n) leaves room for no more")
        self.http = PatientHTTPServer(self.application(), xheaders=self.settings.trust_proxy_headers,
                                      idle_connection_timeout=HEADER_TIMEOUT)
        self.http.capacity = sockets_allowed
        self.http.open_websockets = lambda: len(self.connections)
        self.http.on_full = self._full
        self.http.add_sockets(sockets)
        self.sessions.start()
        self._sweeper = asyncio.create_task(self._sweep_forever())
        if self.metrics.shared:
            # The other workers answer scrapes with what this one last wrote down.
            self._metrics_refresher = tornado.ioloop.PeriodicCallback(self.metrics.refresh, METRICS_REFRESH * 1000)
            self._metrics_refresher.start()
        self.events.event("server.start", version=__version__, host=self.settings.host, port=self.port,
                          node=self.sessions.node,
                          db=masked_url(self.settings.database_url), flows=self.flow_hashes,
                          settings={"max_frame_bytes": self.settings.max_frame_bytes,
                                    "rate_limit": self.settings.rate_limit,
                                    "history_limit": self.settings.history_limit})
        return self.port

    async def stop(self, reason: str = "stop") -> None:
        """Stop accepting connections and frames, finish those in flight, close every socket with 1001,
        flush the store."""
        if self.stopping:
            return
        self.stopping = True
        if self.http is not None:
            self.http.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._metrics_refresher is not None:
            self._metrics_refresher.stop()
        if self.listener is not None:
            self.listener.close()
        deadline = time.monotonic() + self.settings.shutdown_timeout
        drained = await self._drain(self.settings.shutdown_timeout)
        for socket in list(self.connections):
            socket.close(GOING_AWAY, "server going away")
        try:
            if self.http is not None:
                await asyncio.wait_for(self.http.close_all_connections(), timeout=2)
        except asyncio.TimeoutError:
            pass  # a peer that does not finish its close handshake must not keep the store unflushed
        finally:
            # A database that stopped answering must not hold the stop up past what it is given
            # (a service manager would kill the process then): what waits for it was never acknowledged.
            wait = max(deadline - time.monotonic(), STORE_CLOSE_LEAST)
            # A thread of its own: the blocking threads may all be waiting for the database too.
            closer = ThreadPoolExecutor(1, thread_name_prefix="chatbot-store-close")
            self.flushed = await asyncio.get_running_loop().run_in_executor(closer, self.store.close, wait)
            closer.shutdown(wait=False)
            self.executor.shutdown(wait=False)
        if not self.flushed:
            self.events.warning("storage.stuck", reason="the database stopped answering: its last writes were not "
                                "committed, and were never acknowledged")
        self.events.event("server.stop", reason=reason, drained=drained, flushed=self.flushed)

    def may_start_session(self, address: str) -> bool:
        """Whether a client at `address` (see client_address) may start one more session now
        (`new_sessions_per_ip` a minute)."""
        bucket = self.new_sessions.pop(address, None)
        if bucket is None:
            per_minute = self.settings.new_sessions_per_ip
            bucket = RateLimiter(per_minute / 60, per_minute)
        self.new_sessions[address] = bucket
        if len(self.new_sessions) > ADDRESSES_TRACKED:
            self.new_sessions.popitem(last=False)  # the address idle longest is forgotten
        return bucket.allow()

    async def _listen_for_other_nodes(self) -> None:
        """LISTEN for the turns other nodes take; StorageError when the database refuses the connection."""
        self.listener = TurnListener(listen_connector(self.settings.database_url), self.sessions.on_note,
                                     self.sessions.catch_up)
        self.listener.start()

    def _full(self, reason: str) -> None:
        """A connection was turned away for want of descriptors: say so, not too often."""
        now = time.monotonic()
        if now - self._full_logged_at >= FULL_LOG_INTERVAL:
            self._full_logged_at = now
            self.events.warning("server.full", reason=reason, connections=len(self.connections))

    async def _drain(self, timeout: float) -> bool:
        """Wait for the frames being handled to finish; False when the time ran out."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.in_flight == 0

    async def _sweep_forever(self) -> None:
        rounds = 0
        expiry_due = False
        while True:
            await asyncio.sleep(min(30.0, max(self.settings.session_evict_after / 2, 0.5)))
            rounds += 1
            self.sessions.sweep()
            if self.store.database_failing:
                # Without turns nothing would write, and a balancer that stopped sending them on
                # /healthz's 503 would keep this node out after the database came back.
                with contextlib.suppress(Exception):
                    await asyncio.wrap_future(self.store.probe())
            expiry_due = expiry_due or rounds % 120 == 1  # about once an hour
            if not expiry_due:
                continue
            try:
                deleted = await self.sessions.delete_expired()
            except Exception as error:  # a locked or unreachable database: try again next round
                self.events.warning("sessions.expiry_failed", reason=str(error) or type(error).__name__)
                continue
            expiry_due = False
            if deleted:
                self.events.event("sessions.deleted", count=deleted, reason="expired")


def listen(host: str, port: int) -> list:
    """The listening sockets for `host` and `port`; a ConfigError if they cannot be had."""
    try:
        return bind_sockets(port, host)
    except OSError as error:
        raise listen_error(host, port, error) from None


def listen_error(host: str, port: int, error: OSError) -> ConfigError:
    """The message for a host that does not resolve or a port that is taken or not allowed."""
    reason = error.strerror or str(error)
    return ConfigError(f"serve: cannot listen on {_shown_host(host)}:{port}: {reason[:1].lower()}{reason[1:]}")


def _shown_host(host: str) -> str:
    """A host as it stands before ':PORT' (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


def listening_line(host: str, port: int, workers: int = 1) -> str:
    shown = _shown_host(host)
    processes = f" with {workers} workers" if workers > 1 else ""
    return (f"chatbot {__version__} listening on http://{shown}:{port}/ (WebSocket at /ws){processes}; "
            "press Ctrl-C to stop")


async def serve(server: ChatServer, *, announce=print, sockets: list | None = None,
                early_stops: list[int] | None = None) -> None:
    """Run until SIGTERM, SIGINT or SIGHUP (the terminal closed), then stop gracefully.

    `early_stops`: the stop signals that came before this started (see `chatbot serve`); the
    first stops the server as soon as it has started."""
    # The handlers come first: a signal that arrives while the server starts (opening the
    # database may take a while) stops it once started.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    received: list[str] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, lambda s=sig: (received.append(s.name), stop.set()))
    # Read once the handlers above are in place: a signal noted before is in the list by now.
    if early_stops:
        received[:0] = [signal.Signals(signum).name for signum in early_stops]
        stop.set()
    port = await server.start(sockets)
    # What is built by now (modules, flows, the engine) lives as long as the process: the
    # collector need not walk it again in every full collection. A turn allocates hundreds of
    # objects, few of them in reference cycles: with the default threshold (700), collections
    # took 1.2 s in a load benchmark's run and stalled the loop for up to 90 ms at a time;
    # with GC_THRESHOLD, 0.07 s and 13 ms (see docs/performance.md).
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    if sockets is None:  # a worker's supervisor has announced already
        announce(listening_line(server.settings.host, port))
    await stop.wait()
    if sockets is None:
        announce("stopping…")
    await server.stop(reason=received[0] if received else "stop")
