"""Prometheus metrics of one server process, in a registry of its own.

The server owns one ``Metrics`` and hands it to the parts that count things::

    metrics.messages_in.labels(kind="message").inc()
    with metrics.reply_latency.time():
        ...
    body, content_type = metrics.render()

Each instance has its own ``CollectorRegistry`` (never the global default), so tests and
several servers in one process do not share counts. The metric names are listed in
``docs/logging.md``.

The workers of `chatbot serve --workers N` share one port, so a scrape reaches any one of them:
after `share_between_processes(folder)` in their parent, each worker's metrics are kept in files
there, and every worker's `/metrics` answers with the sums over all of them.
"""

from __future__ import annotations

import os
from typing import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

__all__ = ["LATENCY_BUCKETS", "Metrics", "process_ended", "share_between_processes"]

#: Where the processes of this server keep their metrics, when they share them.
_shared_folder: str | None = None


def share_between_processes(folder: str) -> None:
    """Count the metrics made from now on, in this process and those it forks, together in `folder`
    (empty, and kept until the last of them ends)."""
    global _shared_folder
    _shared_folder = folder
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder  # where prometheus_client puts each process's file
    values.ValueClass = values.MultiProcessValue()


def process_ended(pid: int) -> None:
    """A process that shared its metrics ended: its gauges no longer count (its counters still do)."""
    if _shared_folder is not None:
        multiprocess.mark_process_dead(pid, _shared_folder)

# From 0.1 ms (a reply computed in memory) to 1 s (a stalled database); slower lands in +Inf.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05,
    0.1, 0.25, 0.5,
    1.0,
)  # fmt: skip

MESSAGE_KINDS = ("message", "action")
LOGIN_RESULTS = ("ok", "failed", "throttled")


class Metrics:
    """The counters, gauges and histograms of the chat server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry

        # Shared between processes, a gauge adds up those of the processes alive (`db_failing`:
        # whether any of them fails); alone, the mode changes nothing.
        self.connections_open = Gauge(
            "chatbot_connections_open", "WebSocket connections open now.", registry=registry,
            multiprocess_mode="livesum",
        )
        self.sessions_live = Gauge(
            "chatbot_sessions_live", "Chat sessions held in memory now.", registry=registry,
            multiprocess_mode="livesum",
        )

        self.messages_in = Counter(
            "chatbot_messages_in",
            "Client frames handled: typed messages and button actions.",
            ["kind"],
            registry=registry,
        )
        self.messages_out = Counter(
            "chatbot_messages_out", "Bot replies sent.", registry=registry
        )
        self.transitions = Counter(
            "chatbot_transitions", "Dialog state transitions, by flow.", ["flow"], registry=registry
        )
        self.errors = Counter(
            "chatbot_errors",
            "Errors reported to clients, by error code.",
            ["code"],
            registry=registry,
        )
        self.logins = Counter(
            "chatbot_logins", "Login attempts, by result.", ["result"], registry=registry
        )
        self.resumes = Counter(
            "chatbot_resumes", "Sessions resumed by a reconnecting client.", registry=registry
        )
        self.resent_replies = Counter(
            "chatbot_resent_replies",
            "Replies sent again after a resume because the client had not seen them.",
            registry=registry,
        )

        self.reply_latency = Histogram(
            "chatbot_reply_latency_seconds",
            "Time from a client frame arriving to the last reply for it being sent.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.db_failing = Gauge(
            "chatbot_db_failing",
            "1 while the database fails the writes it is given (a full disk, a lost server), else 0.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.db_commit = Histogram(
            "chatbot_db_commit_seconds",
            "Time a turn waits for its write to be committed, waiting behind other writes included.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

        # Known label values appear at 0 from the start, so rates work before the first event.
        # The children counted on every message are kept: labels() is a locked look-up each time.
        self.messages_in_by_kind = {kind: self.messages_in.labels(kind=kind) for kind in MESSAGE_KINDS}
        for result in LOGIN_RESULTS:
            self.logins.labels(result=result)
        self._transitions_by_flow: dict[str, Counter] = {}
        self._failing: Callable[[], bool] | None = None
        if _shared_folder is not None:
            # Every kind of file this process counts in is open now; a program it starts (an
            # author's action may) must not count into them.
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

    @property
    def shared(self) -> bool:
        """Whether these metrics are counted together with other processes' (see share_between_processes)."""
        return _shared_folder is not None

    def follow_db_failing(self, failing: Callable[[], bool]) -> None:
        """Have `chatbot_db_failing` show `failing()`. Shared between processes, a scrape reads
        what each process last wrote: `refresh()` writes it, and the server calls it every second."""
        self._failing = failing
        if not self.shared:
            self.db_failing.set_function(lambda: float(failing()))

    def refresh(self) -> None:
        """Write down the values that are read, not counted (see follow_db_failing)."""
        if self._failing is not None:
            self.db_failing.set(float(self._failing()))

    def transitions_in(self, flow: str):
        """The transitions counter of one flow."""
        child = self._transitions_by_flow.get(flow)
        if child is None:
            child = self._transitions_by_flow[flow] = self.transitions.labels(flow=flow)
        return child

    def render(self) -> tuple[bytes, str]:
        """The text exposition of every metric, and its HTTP content type."""
        if _shared_folder is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        self.refresh()  # this process's own values as of now
        every_process = CollectorRegistry()
        multiprocess.MultiProcessCollector(every_process, path=_shared_folder)
        return generate_latest(every_process), CONTENT_TYPE_LATEST
