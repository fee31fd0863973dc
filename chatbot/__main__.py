"""`python -m chatbot` and the installed `chatbot` command."""

import sys

from chatbot.interrupts import ctrl_c_kept


def run() -> None:
    with ctrl_c_kept() as interrupted:  # the command's modules take a moment to load
        from chatbot.cli import main
    if interrupted:
        sys.stderr.write("\nAborted!\n")
        sys.exit(1)
    main()


if __name__ == "__main__":
    run()
