"""`python -m chatbot` and the installed `chatbot` command."""

import signal
import sys


def run() -> None:
    # Ctrl-C while the program is still loading is kept and acted on once it has loaded: raised
    # as KeyboardInterrupt in the middle of an import, Python may swallow it (in an import lock's
    # callback) and go on as if nothing happened, or print a traceback.
    interrupted: list[int] = []
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:  # ignored: left so
        from chatbot.cli import main
    else:
        signal.signal(signal.SIGINT, lambda signum, _frame: interrupted.append(signum))
        try:
            from chatbot.cli import main
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if interrupted:
        sys.stderr.write("\nAborted!\n")
        sys.exit(1)
    main()


if __name__ == "__main__":
    run()
