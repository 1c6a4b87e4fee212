"""`ift verify`: rebuild the pipeline from a clean state and compare with the committed metrics.

The rebuild happens in a temporary copy of the committed tree (HEAD) with an empty DVC
cache, so the user's workspace and cache are untouched and nothing is restored from a
run cache: every stage really runs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ift.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-6  # same machine: the CPU run is deterministic (see README, Guarantees)
METRICS_GLOB = "reports/*/metrics.json"


def subprocess_env(copy: Path) -> dict[str, str]:
    """The environment for running `dvc` and the stages of `copy` from this interpreter's environment.

    PYTHONPATH puts the copy's own `src` first: the editable install would otherwise import
    `ift` from the checkout the command runs in, uncommitted edits included.
    """
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(copy / "src"), os.environ.get("PYTHONPATH")])),
            "DVC_NO_ANALYTICS": "1", "TQDM_DISABLE": "1"}


def _run(cmd: list[str], cwd: Path, capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=subprocess_env(cwd), text=True, capture_output=capture)


def export_head(repo: Path, dest: Path) -> None:
    """The committed tree (as a fresh clone has it) in `dest`, as a git repo of its own."""
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=repo, capture_output=True)
    if archive.returncode != 0:
        raise UserError(f"{repo}: not a git repository with a commit; `ift verify` checks committed results")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    commit_all(dest, "HEAD")


def commit_all(root: Path, message: str) -> None:
    """Make `root` a git repo of its own with everything in it committed (DVC and dvclive need one)."""
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=ift", "-c", "user.email=ift@localhost", "commit", "-qm", message]):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)


def stale_reasons(copy: Path) -> list[str]:
    """Why the committed dvc.lock does not match the committed code and params (empty if it does).

    Outputs missing from a fresh clone (not in any cache) do not count; changed code,
    params, commands, or committed metrics that differ from the lock do.
    """
    from ift.config import CONFIG_DIR, compose, to_yaml

    reasons = []
    if (copy / "params.yaml").read_text() != to_yaml(compose([], copy / CONFIG_DIR)):
        reasons.append("params.yaml is not the composition of conf/ (run `python -m ift.config`)")
    status = _run(["dvc", "status", "--json"], copy)
    if status.returncode != 0:
        raise UserError(f"`dvc status` failed: {status.stderr.strip()[-300:]}")
    for stage, changes in json.loads(status.stdout or "{}").items():
        for change in changes:
            if isinstance(change, str):
                reasons.append(f"{stage}: {change}")
                continue
            for kind, items in change.items():
                if kind == "changed params":
                    reasons.append(f"{stage}: changed params {sorted(k for v in items.values() for k in v)}")
                elif kind in ("changed deps", "changed outs"):
                    changed = sorted(p for p, state in items.items() if state in ("modified", "new"))
                    if changed:
                        reasons.append(f"{stage}: {kind} {changed}")
                elif kind == "changed command":
                    reasons.append(f"{stage}: changed command")
    return reasons


def _numbers(data: object, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a metrics file, keyed by dotted path."""
    if isinstance(data, dict):
        out: dict[str, float] = {}
        for key, value in data.items():
            out.update(_numbers(value, f"{prefix}{key}."))
        return out
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        return {prefix.rstrip("."): float(data)}
    return {}


def compare_metrics(committed_root: Path, reproduced_root: Path, tolerance: float) -> tuple[list[tuple], bool]:
    """Rows (file, metric, committed, reproduced, difference, ok) and whether all are within tolerance."""
    rows, all_ok = [], True
    for path in sorted(committed_root.glob(METRICS_GLOB)):
        relative = path.relative_to(committed_root)
        committed = _numbers(json.loads(path.read_text()))
        reproduced_file = reproduced_root / relative
        reproduced = _numbers(json.loads(reproduced_file.read_text())) if reproduced_file.exists() else {}
        for key, value in committed.items():
            new = reproduced.get(key)
            diff = None if new is None else new - value
            ok = diff is not None and abs(diff) <= tolerance
            all_ok &= ok
            rows.append((str(relative.parent), key, value, new, diff, ok))
    return rows, all_ok


def format_table(rows: list[tuple], tolerance: float) -> str:
    lines = [f"{'file':<18} {'metric':<22} {'committed':>14} {'reproduced':>14} {'difference':>12}",
             "-" * 84]
    for where, key, old, new, diff, ok in rows:
        shown_new = "missing" if new is None else f"{new:.6g}"
        shown_diff = "-" if diff is None else f"{diff:+.3g}"
        flag = "" if ok else "  <-- differs"
        lines.append(f"{where:<18} {key:<22} {old:>14.6g} {shown_new:>14} {shown_diff:>12}{flag}")
    lines.append(f"tolerance: {tolerance:g} (absolute)")
    return "\n".join(lines)


def locked_outputs(lock_file: Path) -> dict[str, str]:
    """{output path: md5} from a dvc.lock."""
    import yaml

    lock = yaml.safe_load(lock_file.read_text()) or {}
    return {out["path"]: out.get("md5", "") for stage in lock.get("stages", {}).values()
            for out in stage.get("outs", [])}


def verify(repo: Path, tolerance: float = DEFAULT_TOLERANCE, keep: bool = False) -> bool:
    """Rebuild HEAD in a temporary copy; print the comparison; True if every metric matches."""
    workdir = Path(tempfile.mkdtemp(prefix="ift-verify-"))
    committed = Path(tempfile.mkdtemp(prefix="ift-committed-"))
    try:
        export_head(repo, workdir)
        if not list(workdir.glob(METRICS_GLOB)):
            raise UserError(f"no committed {METRICS_GLOB}: run `dvc repro` and commit the metrics first")
        reasons = stale_reasons(workdir)
        if reasons:
            raise UserError("the committed dvc.lock is stale (" + "; ".join(reasons) +
                            "): run `dvc repro` and commit dvc.lock and the metrics")
        for path in workdir.glob(METRICS_GLOB):  # keep the committed values before they are rebuilt
            (committed / path.relative_to(workdir)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, committed / path.relative_to(workdir))
        committed_outs = locked_outputs(workdir / "dvc.lock")

        print(f"rebuilding the committed pipeline from scratch in {workdir} ...", file=sys.stderr, flush=True)
        repro = _run(["dvc", "repro"], workdir, capture=False)
        if repro.returncode != 0:
            raise UserError(f"`dvc repro` failed in {workdir} (exit {repro.returncode}); see its output above")

        rows, ok = compare_metrics(committed, workdir, tolerance)
        print(format_table(rows, tolerance))
        reproduced_outs = locked_outputs(workdir / "dvc.lock")
        differing = sorted(p for p, md5 in committed_outs.items() if reproduced_outs.get(p) != md5)
        print("outputs in dvc.lock: " + ("byte-identical to the committed ones" if not differing
                                          else f"differ from the committed ones: {', '.join(differing)}"))
        print("verify: " + ("OK, every metric reproduced" if ok else "FAILED, metrics differ beyond the tolerance"))
        return ok
    finally:
        shutil.rmtree(committed, ignore_errors=True)
        if keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
