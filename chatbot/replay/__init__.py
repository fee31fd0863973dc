"""Replaying logged chat sessions: offline through the engine, or live against a server.

`read_sessions` turns log files into `RecordedSession`s; `replay_session` runs one through
an `Engine` with the recorded answers of everything non-deterministic and returns an
`Outcome` (`same`, `diverged` at a step, or `incomplete`); `replay_live` sends sessions to
a running server. The `replay` click command puts it together (see docs/logging.md).
"""

from chatbot.replay.reader import LogSet, Mark, RecordedSession, Step, read_sessions
from chatbot.replay.runner import Aspect, Divergence, Outcome, Replayer, replay_session, replay_sessions

__all__ = [
    "Aspect",
    "Divergence",
    "LogSet",
    "Mark",
    "Outcome",
    "RecordedSession",
    "Replayer",
    "Step",
    "read_sessions",
    "replay_session",
    "replay_sessions",
]
