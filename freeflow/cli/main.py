"""The ``freeflow`` command: its parser, errors as one line with exit status 2, and stopping
at once on SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from freeflow.cli.options import add_commands

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="freeflow",
        description="Free energies of atomic solids with normalizing flows.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    add_commands(commands)
    return parser


def _keeps_work(args) -> bool:
    """Whether the command keeps finished work on disk, so that running it again continues."""
    if args.command in ("train", "sample", "compare"):
        return True
    if args.command == "sweep":
        return args.out is not None
    if args.command == "baseline":
        return args.workdir is not None
    if args.command == "estimate":
        return args.method == "smc" and args.workdir is not None
    return False


def _exit_on_signal(command: str, keeps_work: bool, status: int):
    """A SIGINT or SIGTERM handler that stops the process at once with ``status`` (130 for
    SIGINT, 143 for SIGTERM, what batch schedulers send).

    A ``KeyboardInterrupt`` raised inside XLA's compilation or its callbacks can hang the
    process or crash it; stopping at once is safe because every file freeflow writes is
    replaced atomically (an interrupted run resumes from its last checkpoint, as after
    ``kill -9``)."""
    def handler(signum, frame):
        kept = ("finished work is kept (run the same command to continue)" if keeps_work
                else "nothing was kept (--workdir or --out makes this command resumable)"
                if command in ("baseline", "estimate") else "nothing was kept")
        message = f"freeflow {command}: interrupted; {kept}\n"
        try:
            sys.stdout.flush()
            os.write(2, message.encode())
        finally:
            os._exit(status)
    return handler


def _message(error: BaseException) -> str:
    """One line for an error: an ``OSError``'s own words without the ``[Errno N]`` prefix."""
    if isinstance(error, OSError) and error.strerror:
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror}{where}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum, status in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
            previous[signum] = signal.signal(signum, _exit_on_signal(
                args.command, _keeps_work(args), status))
    try:
        return args.run(args)
    except (ValueError, OSError, FloatingPointError, RuntimeError) as error:
        print(f"freeflow {args.command}: error: {_message(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"freeflow {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)



if __name__ == "__main__":
    sys.exit(main())
