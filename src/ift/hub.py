"""Access to the Hugging Face Hub: resolving revisions and turning Hub failures into one line.

Stages after fetch run with HF_HUB_OFFLINE=1, so only fetch ever touches the network.
Tokens are read by huggingface_hub from the environment (HF_TOKEN) or `hf auth login`;
this project never reads, prints or stores them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from ift.errors import UserError, one_line

OFFLINE_HINT = ("check the name, log in with `hf auth login` for gated or private repos, "
                "use a local path, or run offline with `model=tiny data=demo`")


def set_offline() -> None:
    """Forbid Hub access for the rest of this process (every stage after fetch)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    # huggingface_hub reads the variable once, at import: set its constant too if it is loaded.
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


@contextlib.contextmanager
def hub_errors(kind: str, repo_id: str) -> Iterator[None]:
    """Re-raise any failure to reach or read `repo_id` as a one-line UserError."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:  # the Hub client raises many types (HTTP, offline, gated, ...)
        from huggingface_hub import constants
        from huggingface_hub.errors import (
            GatedRepoError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        if constants.HF_HUB_OFFLINE:
            reason = "not in the local Hugging Face cache, and HF_HUB_OFFLINE=1 forbids downloading"
        elif _is_connection_error(exc):
            reason = "the Hub is unreachable: no network?"
        elif isinstance(exc, GatedRepoError):
            reason = "the repo is gated: accept its terms on the Hub, then `hf auth login`"
        elif isinstance(exc, RevisionNotFoundError):
            reason = "that revision does not exist"
        elif isinstance(exc, RepositoryNotFoundError):
            reason = "no such repo (or it is private)"
        else:
            reason = f"{type(exc).__name__}: {one_line(str(exc))[:200]}"
        raise UserError(f"cannot fetch {kind} '{repo_id}' from the Hugging Face Hub ({reason}); "
                        f"{OFFLINE_HINT}") from exc


def _is_connection_error(exc: BaseException) -> bool:
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    while exc is not None:
        if isinstance(exc, (ConnectionError, TimeoutError, LocalEntryNotFoundError, OfflineModeIsEnabled)):
            return True
        if type(exc).__name__ in ("ConnectError", "ConnectTimeout", "ReadTimeout", "NetworkError"):
            return True  # httpx's, without importing it
        exc = exc.__cause__ or exc.__context__
    return False


def resolve_revision(repo_id: str, repo_type: str, revision: str | None) -> str:
    """The commit hash that `revision` (branch, tag or hash; None = main) points to.

    Asks the Hub; with HF_HUB_OFFLINE=1 it reads the local Hugging Face cache instead, so
    a model or dataset downloaded before can be fetched without a network.
    """
    from huggingface_hub import HfApi, constants, snapshot_download

    with hub_errors(repo_type, repo_id):
        if constants.HF_HUB_OFFLINE:
            return Path(snapshot_download(repo_id, repo_type=repo_type, revision=revision,
                                          local_files_only=True)).name
        return HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision).sha
