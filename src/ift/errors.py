"""User-facing errors: one clear line, a non-zero exit, a traceback only when asked for."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TypeVar

DEBUG_ENV = "IFT_DEBUG"
# Set by ift.processes for the training processes it launches under torchrun: their errors go
# to the launcher (torchrun's per-process error file), which prints the first one.
LAUNCHER_ENV = "IFT_LAUNCHER_PID"

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


def _report(message: str) -> None:
    """The one error line: on stderr, or, in a training process of ours, to its launcher."""
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file and os.environ.get(LAUNCHER_ENV) == str(os.getppid()):
        with open(error_file, "w") as handle:  # the format torchrun's ProcessFailure reads
            json.dump({"message": message, "timestamp": int(time.time())}, handle)
        return
    print(f"error: {message}", file=sys.stderr)


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
            _report(one_line(str(exc)))
            sys.exit(2)
        except Exception as exc:  # an unexpected crash: still one line unless debugging
            if debug_enabled():
                raise
            logging.getLogger("ift").debug("crash", exc_info=True)
            _report(f"{type(exc).__name__}: {one_line(str(exc))} (set {DEBUG_ENV}=1 for the traceback)")
            sys.exit(1)

    return wrapper  # type: ignore[return-value]
