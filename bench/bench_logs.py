"""Cost of one EventLog event with the rotating JSON file handler on (no console output).

Run from the repository root: .venv/bin/python -m bench.bench_logs [events]
Prints microseconds per event for: an event that is written, the plain stdlib logger.info
call with the same fields, the JSON formatting alone, and an event below the level (dropped
by isEnabledFor). Most of a written event is the file lock and the flush that keep several
processes from losing lines.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

from chatbot.logs import EVENT_FIELDS, EventLog, JsonLineFormatter, setup_logging

FIELDS = {"session": "9f8e7d6c", "conn": "c12", "user": "ann", "text": "hello there"}


def per_event_us(action, count: int) -> float:
    start = time.perf_counter()
    for index in range(count):
        action(index)
    return (time.perf_counter() - start) / count * 1e6


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    count = int(args[0]) if args else 20000
    with tempfile.TemporaryDirectory() as tmp:
        with setup_logging(log_dir=Path(tmp), console="none", level="INFO"):
            logger = logging.getLogger("chatbot.bench")
            log = EventLog(logger)

            def message_in(index: int) -> None:
                log.event("message.in", id=index, **FIELDS)

            def skipped(index: int) -> None:
                log.event("transition", session="9f8e7d6c", flow=None, trigger="greet")

            def plain(index: int) -> None:
                logger.info("message.in", extra={"id": index, **FIELDS})

            formatter = JsonLineFormatter()
            record = logger.makeRecord(
                logger.name, logging.INFO, __file__, 0, "message.in", (), None,
                extra={EVENT_FIELDS: {"id": 1, **FIELDS}},
            )

            def format_only(index: int) -> None:
                formatter.format(record)

            per_event_us(message_in, 1000)  # warm up: open the file and the lock
            written = per_event_us(message_in, count)
            stdlib = per_event_us(plain, count)
            formatting = per_event_us(format_only, count)
            logger.setLevel(logging.WARNING)
            below = per_event_us(skipped, count * 10)
            size = (Path(tmp) / "chatbot.log").stat().st_size
    print(f"EventLog.event, written to file:   {written:7.2f} µs/event")
    print(f"logger.info(extra=...), written:   {stdlib:7.2f} µs/event")
    print(f"JSON formatting alone:             {formatting:7.2f} µs/event")
    print(f"EventLog.event, below the level:   {below:7.2f} µs/event")
    print(f"({count} events each, log file {size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
