"""The ``tlgan`` entry point: signals first, then the commands, with one-line errors.

Every command turns TlganError into one line on stderr and exit status 1; a
failed write (read-only folder, full disk, a parent path that is a file) into
``error: cannot write PATH: reason``; Ctrl-C (SIGINT) and SIGTERM, even while
the heavy libraries are still being imported, into exit status 130 / 143 with
what was kept. This module imports nothing heavy: the handlers are in place
before torch loads.
"""

from __future__ import annotations

import signal
import sys
from typing import Any, NoReturn

from tlgan.errors import TlganError, describe_os_error

_received: list[int] = []


def _on_signal(signum: int, frame: Any) -> None:
    """SIGINT and SIGTERM both stop the command the way Ctrl-C does (temporary files removed, shards kept)."""
    _received.append(signum)
    raise KeyboardInterrupt


def install_signal_handlers() -> dict[int, Any]:
    """Route SIGINT and SIGTERM to KeyboardInterrupt; returns the previous handlers (none off the main thread)."""
    previous = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, _on_signal)
    except ValueError:  # not the main thread (e.g. called from a test runner's worker)
        pass
    return previous


def _ignore_signals() -> None:
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
    except ValueError:  # not the main thread
        pass


def _stopped() -> NoReturn:
    _ignore_signals()  # a second signal must not interrupt the goodbye
    signum = _received[-1] if _received else signal.SIGINT
    word = "terminated" if signum == signal.SIGTERM else "interrupted"
    print(f"{word}: finished work is kept; rerun the same command to resume", file=sys.stderr)
    sys.exit(128 + int(signum))


def _fail(message: str, code: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def main(*, exiting: bool = True) -> None:
    """Console entry point: run the CLI with one-line errors and clean interrupts.

    ``exiting`` (the console script): once the command has finished, SIGINT and SIGTERM are ignored, because
    Python's shutdown (torch's teardown takes about half a second) would otherwise turn a late Ctrl-C into a
    death by signal after the output was complete. ``exiting=False`` (tests, notebooks) restores the caller's
    handlers instead.
    """
    previous = install_signal_handlers()
    try:
        _run()
    except KeyboardInterrupt:
        _stopped()
    except TlganError as exc:
        _fail(str(exc))
    except OSError as exc:  # I/O outside tlgan.atomic: say which file and why, no traceback
        _fail(describe_os_error(exc))
    finally:
        if exiting:
            _ignore_signals()
        else:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _run() -> None:
    import click

    from .commands import cli as group

    try:
        group.main(standalone_mode=False)
    except click.exceptions.Abort:  # click turns Ctrl-C (and EOF at a prompt) into Abort
        raise KeyboardInterrupt from None
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except RecursionError:
        _fail("input nested too deeply (a JSON header or declaration?)")
    except Exception as exc:  # safetensors' errors carry no path; tlgan.atomic names it when writing
        if type(exc).__name__ == "SafetensorError":
            _fail(f"safetensors: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        raise


def __getattr__(name: str) -> Any:
    if name == "cli":  # the click group, imported on first use (tests, docs tools)
        from .commands import cli

        return cli
    raise AttributeError(name)


if __name__ == "__main__":
    main()
