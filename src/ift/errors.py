"""User-facing errors: one clear line, a non-zero exit, a traceback only when asked for."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

DEBUG_ENV = "IFT_DEBUG"

F = TypeVar("F", bound=Callable[..., object])


class UserError(Exception):
    """A problem the user can fix (bad input, bad params, no network); shown as one line."""


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def configure_logging() -> None:
    """INFO from our code; only warnings from chatty libraries (absl prints at INFO)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in ("absl", "httpx", "datasets", "urllib3", "accelerate"):
        logging.getLogger(name).setLevel(logging.WARNING)


def one_line(message: str) -> str:
    return " ".join(str(message).split())


def run_main(main: F) -> F:
    """Wrap a command's entry point: known errors print one line and exit 2 (1 for a crash).

    Set IFT_DEBUG=1 to get the full traceback instead.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            sys.exit(130)
        except UserError as exc:
            if debug_enabled():
                raise
            print(f"error: {one_line(str(exc))}", file=sys.stderr)
            sys.exit(2)
        except Exception as exc:  # an unexpected crash: still one line unless debugging
            if debug_enabled():
                raise
            logging.getLogger("ift").debug("crash", exc_info=True)
            print(
                f"error: {type(exc).__name__}: {one_line(str(exc))} "
                f"(set {DEBUG_ENV}=1 for the traceback)",
                file=sys.stderr,
            )
            sys.exit(1)

    return wrapper  # type: ignore[return-value]
