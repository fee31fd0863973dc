"""save_turn throughput: group commit against one transaction per write.

Both runs submit the same turns as fast as they can, many of them in flight at
once (like many connections each waiting for its reply); the only difference
is how many writes the writer may put in one transaction.

    .venv/bin/python bench/bench_storage.py [--turns 3000] [--sessions 100] [--url URL]

Without --url it uses a fresh SQLite file in a temporary directory; give a
postgresql:// URL to an empty database or schema to measure PostgreSQL.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from chatbot.storage import HistoryRecord, SessionRecord, Store, TurnWrite


def measure(url: str, *, max_batch: int, sessions: int, turns: int, prefix: str) -> tuple[float, int]:
    """Return (writes per second, transactions used)."""
    store = Store(url, max_batch=max_batch)
    store.open()
    try:
        now = time.time()
        for n in range(sessions):
            record = SessionRecord(f"{prefix}{n}", f"{prefix}t{n}", "main", "main:chat", {}, "en", None, "1", 0, now, now)
            store.create_session(record)
        store.flush()
        before = store.write_stats
        started = time.perf_counter()
        futures = []
        for t in range(turns):
            seq = 2 * (t // sessions + 1)
            entries = (
                HistoryRecord(seq - 1, "user", f"message {t}", {}, now),
                HistoryRecord(seq, "bot", f"reply {t}", {"buttons": ["yes", "no"]}, now),
            )
            futures.append(store.save_turn(TurnWrite(
                f"{prefix}{t % sessions}", "main", "main:chat", {"turn": t}, "en", None, "1", seq, now,
                entries=entries, client_id=f"c{t}", reply_seq_range=(seq, seq),
            )))
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - started
        return turns / elapsed, store.write_stats.transactions - before.transactions
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=3000)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--url", help="database url (default: a temporary SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        results = {}
        for name, max_batch in (("one transaction per write", 1), ("group commit", 256)):
            rate, transactions = measure(url, max_batch=max_batch, sessions=args.sessions, turns=args.turns,
                                         prefix=f"{max_batch}-")
            results[name] = rate
            print(f"{name:>26}: {rate:8.0f} writes/s  ({args.turns} writes in {transactions} transactions)")
        ratio = results["group commit"] / results["one transaction per write"]
        print(f"{'ratio':>26}: {ratio:8.1f}x")


if __name__ == "__main__":
    main()
