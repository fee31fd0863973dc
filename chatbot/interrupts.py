"""A Ctrl-C kept for later while the program loads or starts.

Raised as KeyboardInterrupt in the middle of an import, Python may swallow it (in an import
lock's callback) and go on as if nothing happened, or print a traceback. Kept as a note
instead, it is acted on once the work is done. Nothing but the standard library here: the
command's entry imports this before anything else.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator


@contextlib.contextmanager
def ctrl_c_kept() -> Iterator[list[int]]:
    """Note each SIGINT in the list yielded instead of raising KeyboardInterrupt, until the block
    ends (or another handler takes over within it). A SIGINT ignored, or handled by someone
    else, is left so."""
    noted: list[int] = []
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield noted
        return
    signal.signal(signal.SIGINT, lambda signum, _frame: noted.append(signum))
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
