"""`ift verify`: rebuild the pipeline from a clean state and compare with the committed metrics.

The rebuild happens in a temporary copy of the committed tree (HEAD) with an empty DVC
cache, so the user's workspace and cache are untouched and nothing is restored from a
run cache: every stage really runs. In the environment that made the committed results the
comparison is exact (byte-identical outputs); elsewhere it is statistical: each metric
within its measured noise. (One module for the staleness check, the rebuild and both
comparison rules: `ift spread` reuses the first two, and the rules share their table.)
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ift.environment import differences
from ift.errors import UserError
from ift.io import read_json

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-6  # same environment: the run is deterministic (see README, Guarantees)
METRICS_GLOB = "reports/*/metrics.json"
ENVIRONMENT_DIR = "reports/environment"
SPREAD_FILE = "reports/spread.json"  # run-to-run spread on the reference environment (`ift spread`)
# Another environment: an eval metric passes within 3 sigma, sigma^2 = stderr^2 + 2 x spread^2;
# a smoothed training curve within 25% of its value, or 3 x sqrt(2) x spread where that is
# wider (docs/reference.md, Guarantees, for the false-alarm rate).
NOISE_SIGMAS = 3.0
# The statistical mode's power, which tests/test_verify.py holds for the committed spread: a shift
# of this many standard errors of any eval metric fails (docs/reference.md, Guarantees).
GUARANTEED_SHIFT_STDERRS = 10.0
TRAINING_RTOL = 0.25
# Outputs that float rounding does not decide (data generation, splitting, prompts): the same anywhere.
ROUNDING_FREE_OUTPUTS = ("data/",)
# Metrics bounded by [0, scale], whose standard error is floored (stderr_floor).
BOUNDED_METRICS = {"exact_match": 1.0, "token_f1": 1.0, "rouge_l": 1.0, "bleu": 100.0}


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


def run_in_copy(cmd: list[str], copy: Path, env: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> None:
    """Run `cmd` (dvc) in `copy` with its own code, `env` added and the variables `drop` left out;
    a failure is a one-line UserError (the command's own output is shown above it)."""
    base = {k: v for k, v in subprocess_env(copy).items() if k not in drop}
    done = subprocess.run(cmd, cwd=copy, env={**base, **(env or {})}, text=True)
    if done.returncode != 0:
        raise UserError(f"`{' '.join(cmd)}` failed in {copy} (exit {done.returncode}); see its output above")


def refuse_stale(copy: Path, advice: str) -> None:
    """A UserError if the committed dvc.lock in `copy` does not match its code and params."""
    reasons = stale_reasons(copy)
    if reasons:
        raise UserError("the committed dvc.lock is stale (" + "; ".join(reasons) + f"): {advice}")


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
                    # DVC 3 lists changed params among the deps: {"params.yaml": {"train": "modified"}}
                    params = sorted(key for state in items.values() if isinstance(state, dict) for key in state)
                    if params:
                        reasons.append(f"{stage}: changed params {params}")
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


def read_metrics(root: Path) -> dict[str, dict[str, float]]:
    """{report dir (e.g. "tuned"): {metric: value}} for every metrics file under `root`."""
    return {path.parent.name: _numbers(read_json(path)) for path in sorted(root.glob(METRICS_GLOB))}


def read_environments(root: Path) -> dict[str, dict]:
    """{stage: environment record} as the stages wrote them under `root` (after a run)."""
    return {path.stem: read_json(path) for path in sorted((root / ENVIRONMENT_DIR).glob("*.json"))}


def environment_hashes(lock_file: Path) -> dict[str, str]:
    """{record path: md5} of the environment records in a dvc.lock.

    The records are DVC-cached outputs (so that the run-cache keeps working), hence not in
    Git: the committed dvc.lock holds their hashes, and equal hashes mean equal records.
    """
    return {path: md5 for path, md5 in locked_outputs(lock_file).items() if path.startswith(ENVIRONMENT_DIR + "/")}


def environment_changes(committed_root: Path, reproduced_root: Path) -> list[str]:
    """What differs between the environments that made the committed and the reproduced results.

    Empty when the records are identical. To name the fields that differ, the committed
    records are taken from reports/spread.json (measured on the reference environment), each
    only if it hashes to what the committed dvc.lock holds.
    """
    import hashlib

    from ift.io import dumps_json

    committed = environment_hashes(committed_root / "dvc.lock")
    if not committed:
        return [f"no environment recorded with the committed results ({ENVIRONMENT_DIR}/ in dvc.lock)"]
    if committed == environment_hashes(reproduced_root / "dvc.lock"):
        return []
    reproduced = read_environments(reproduced_root)
    spread = committed_root / SPREAD_FILE
    recorded = read_json(spread).get("environment", {}) if spread.exists() else {}
    reference = {stage: record for stage, record in recorded.items()
                 if hashlib.md5(dumps_json(record).encode()).hexdigest() == committed.get(
                     f"{ENVIRONMENT_DIR}/{stage}.json")}
    changes = []
    for stage in sorted(set(reference) & set(reproduced)):
        changes += [f"{stage}: {line}" for line in differences(reference[stage], reproduced[stage])]
    return changes or ["the environment records differ from the committed ones (their hashes in dvc.lock)"]


@dataclass
class Row:
    """One metric's comparison: the rule that applied and by how much it passed or failed."""

    where: str
    metric: str
    committed: float
    reproduced: float | None
    rule: str
    margin: str
    ok: bool

    @property
    def difference(self) -> float | None:
        return None if self.reproduced is None else self.reproduced - self.committed


def _exact_row(where: str, key: str, old: float, new: float | None, tolerance: float, relative: bool = False) -> Row:
    limit = tolerance * max(1.0, abs(old)) if relative else tolerance
    ok = new is not None and abs(new - old) <= limit
    return Row(where, key, old, new, f"|d| <= {limit:.3g}", "-" if new is None else f"|d| = {abs(new - old):.3g}", ok)


def stderr_floor(metric: str, value: float, n: float) -> float:
    """The standard error a bounded metric is given when its own is 0 (or unknown): Agresti-Coull's.

    At 0 or 1 every example scores the same and the test-set standard error is 0, which would
    make any change at all a failure; (k + 2) / (n + 4) gives such a value the error it has.
    """
    scale = BOUNDED_METRICS.get(metric)
    if scale is None or n < 1:
        return 0.0
    shrunk = (value / scale * n + 2) / (n + 4)
    return scale * math.sqrt(shrunk * (1 - shrunk) / (n + 4))


def _ratio(difference: float, scale: float) -> float:
    """difference / scale, with 0 / 0 = 0 and x / 0 = inf."""
    return difference / scale if scale > 0 else (0.0 if difference == 0 else math.inf)


def noise_sigma(stderr: float, spread: float) -> float:
    """An eval metric's sigma when the environment differs: its test-set standard error, and the
    run-to-run spread of each of the two builds (README, Guarantees)."""
    return math.sqrt(stderr ** 2 + 2 * spread ** 2)


def allowed_stderrs(stderr: float, spread: float) -> float:
    """How far the statistical mode lets an eval metric move, in its standard errors."""
    return NOISE_SIGMAS * noise_sigma(stderr, spread) / stderr


def _noise_row(where: str, key: str, old: float, new: float, sigma: float, note: str = "") -> Row:
    """Passes within NOISE_SIGMAS x sigma."""
    z = _ratio(abs(new - old), sigma)
    return Row(where, key, old, new, f"|d| <= {NOISE_SIGMAS:g} sigma{note}", f"|d| = {z:.2f} sigma",
               z <= NOISE_SIGMAS)


def statistical_row(where: str, key: str, committed: dict[str, float], new: float | None,
                    spread: dict[str, float]) -> Row:
    """The rule for one metric when the environment differs (README, Guarantees)."""
    # (statistics imports scipy, training torch: not at `ift` start-up)
    from ift.statistics import EVAL_METRICS, stderr_key
    from ift.training import SMOOTHED_CURVES

    old = committed[key]
    if key.endswith("_stderr"):
        return Row(where, key, old, new, "not compared", "an uncertainty, not a result", True)
    if new is None:
        return Row(where, key, old, new, "missing", "-", False)
    if key in EVAL_METRICS:  # within its noise
        se = committed.get(stderr_key(key)) or stderr_floor(key, old, committed.get("n_examples", 0))
        return _noise_row(where, key, old, new, noise_sigma(se, spread.get(key, 0.0)),
                          "" if key in spread else ", no spread measured")
    name = key.removeprefix("smoothed.")
    if name != key and name in SMOOTHED_CURVES:  # a training curve's mean over its last points
        # A relative tolerance: no test-set error floors a spread measured from a few builds.
        spread_limit = NOISE_SIGMAS * math.sqrt(2) * spread.get(key, 0.0)
        if spread_limit > TRAINING_RTOL * abs(old):
            return _noise_row(where, key, old, new, math.sqrt(2) * spread[key])
        relative = _ratio(abs(new - old), abs(old))
        return Row(where, key, old, new, f"|d| <= {TRAINING_RTOL:.0%}", f"|d| = {relative:.1%}",
                   relative <= TRAINING_RTOL)
    if key in SMOOTHED_CURVES:
        return Row(where, key, old, new, "not compared", "last noisy point: see smoothed.*", True)
    # Counts and schedules (n_examples, step, epoch, learning_rate) follow from config and data alone.
    return _exact_row(where, key, old, new, DEFAULT_TOLERANCE, relative=True)


def compare_metrics(committed: dict[str, dict[str, float]], reproduced: dict[str, dict[str, float]], mode: str,
                    tolerance: float = DEFAULT_TOLERANCE, spread: dict | None = None) -> list[Row]:
    """One row per committed metric, under the rules of `mode` (exact, tolerance or statistical)."""
    rows = []
    for where, metrics in committed.items():
        found = reproduced.get(where, {})
        for key, old in metrics.items():
            new = found.get(key)
            if mode == "statistical":
                rows.append(statistical_row(where, key, metrics, new, (spread or {}).get(where, {})))
            else:
                rows.append(_exact_row(where, key, old, new, tolerance))
    return rows


def format_table(rows: list[Row]) -> str:
    lines = [f"{'file':<10} {'metric':<28} {'committed':>12} {'reproduced':>12} {'difference':>11}  "
             f"{'rule':<26} {'result'}", "-" * 120]
    for row in rows:
        shown_new = "missing" if row.reproduced is None else f"{row.reproduced:.6g}"
        shown_diff = "-" if row.difference is None else f"{row.difference:+.3g}"
        verdict = f"ok, {row.margin}" if row.ok else f"FAILED, {row.margin}"
        lines.append(f"{row.where:<10} {row.metric:<28} {row.committed:>12.6g} {shown_new:>12} {shown_diff:>11}  "
                     f"{row.rule:<26} {verdict}")
    return "\n".join(lines)


def locked_outputs(lock_file: Path) -> dict[str, str]:
    """{output path: md5} from a dvc.lock."""
    import yaml

    lock = yaml.safe_load(lock_file.read_text()) or {}
    return {out["path"]: out.get("md5", "") for stage in lock.get("stages", {}).values()
            for out in stage.get("outs", [])}


def read_spread(root: Path, committed: dict[str, dict[str, float]]) -> tuple[dict[str, dict[str, float]], str | None]:
    """({report dir: {metric: run-to-run standard deviation}}, a warning) from the committed
    `ift spread` file; the warning says when it was measured for other results than `committed`."""
    path = root / SPREAD_FILE
    if not path.exists():
        return {}, None
    spread = read_json(path)
    unperturbed = spread.get("runs", {}).get("unperturbed")
    if unperturbed is not None and any(abs(unperturbed.get(where, {}).get(key, math.inf) - value) > DEFAULT_TOLERANCE
                                       for where, metrics in committed.items() for key, value in metrics.items()):
        return spread["std"], (f"{SPREAD_FILE} was measured for other results than the committed ones: "
                               "rerun `ift spread` on the reference environment and commit it")
    return spread["std"], None


def check(committed_root: Path, reproduced_root: Path, force: str | None = None,
          tolerance: float | None = None) -> tuple[bool, str]:
    """Compare a rebuild with the committed results; return (ok, the report to print).

    The mode is exact when both were made in the same environment (or `force="exact"`),
    absolute `tolerance` when one is given, statistical otherwise.
    """
    changes = environment_changes(committed_root, reproduced_root)
    if tolerance is not None:
        mode, why = "tolerance", f"absolute tolerance {tolerance:g} asked for"
    elif force == "exact" or not changes:
        mode = "exact"
        why = "--exact asked for" if changes else "the same environment as the committed results"
    else:
        mode, why = "statistical", "another environment than the committed results"
    lines = [f"mode: {mode} ({why})"]
    if changes:
        lines += ["environment differences:", *(f"  {change}" for change in changes)]
    committed_metrics = read_metrics(committed_root)
    spread, stale = read_spread(committed_root, committed_metrics)
    if mode == "statistical" and not spread:
        lines.append(f"no {SPREAD_FILE} committed: eval metrics are compared by their test-set noise alone")
    elif mode == "statistical" and stale:
        lines.append(f"warning: {stale}")
    rows = compare_metrics(committed_metrics, read_metrics(reproduced_root), mode,
                           DEFAULT_TOLERANCE if tolerance is None else tolerance, spread)
    ok = all(row.ok for row in rows)
    lines.append(format_table(rows))
    committed_outs = locked_outputs(committed_root / "dvc.lock")
    reproduced_outs = locked_outputs(reproduced_root / "dvc.lock")
    differing = sorted(p for p, md5 in committed_outs.items() if reproduced_outs.get(p) != md5)
    lines.append("outputs in dvc.lock: " + ("byte-identical to the committed ones" if not differing
                                             else f"differ from the committed ones: {', '.join(differing)}"))
    if mode == "exact" and differing:
        ok = False
    changed_data = [p for p in differing if p.startswith(ROUNDING_FREE_OUTPUTS)]
    if mode == "statistical" and changed_data:  # another test set is no reproduction, however close
        ok = False
        lines.append(f"outputs that no float rounding decides differ: {', '.join(changed_data)}")
    failed = sorted({f"{row.where}/{row.metric}" for row in rows if not row.ok})
    if ok:
        lines.append(f"verify: OK, every metric reproduced ({mode})")
    else:
        lines.append(f"verify: FAILED ({mode}): " + (", ".join(failed) + " beyond the rule" if failed
                                                      else "outputs differ"))
    return ok, "\n".join(lines)


def rebuild(repo: Path, workdir: Path, committed: Path, env: dict[str, str] | None = None) -> None:
    """Export HEAD into `workdir`, keep its committed results in `committed`, rebuild `workdir` from scratch."""
    export_head(repo, workdir)
    if not list(workdir.glob(METRICS_GLOB)):
        raise UserError(f"no committed {METRICS_GLOB}: run `dvc repro` and commit the metrics first")
    refuse_stale(workdir, "run `dvc repro` and commit dvc.lock and the metrics")
    for pattern in (METRICS_GLOB, SPREAD_FILE, "dvc.lock"):
        for path in workdir.glob(pattern):  # the committed files, before they are rebuilt
            (committed / path.relative_to(workdir)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, committed / path.relative_to(workdir))
    print(f"rebuilding the committed pipeline from scratch in {workdir} ...", file=sys.stderr, flush=True)
    run_in_copy(["dvc", "repro"], workdir, env)


def refuse_changed_code(repo: Path) -> None:
    """A UserError if a tracked file other than the pipeline's results differs from HEAD in `repo`."""
    status = _run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."], repo)
    results = ("dvc.lock", "reports/")  # what `dvc repro` rewrites: the very thing compared
    changed = [line[3:] for line in status.stdout.splitlines() if not line[3:].startswith(results)]
    if changed:
        raise UserError(f"{repo}: {', '.join(changed)} differ from HEAD; `ift verify --here` compares this "
                        "checkout's results with HEAD's: commit or stash the changes, or run `ift verify`")


def verify(repo: Path, force: str | None = None, tolerance: float | None = None, keep: bool = False,
           here: bool = False) -> bool:
    """Rebuild HEAD in a temporary copy (`here`: take this checkout's results as the rebuild);
    print the comparison; True if it passes."""
    if here:
        top = _run(["git", "rev-parse", "--show-toplevel"], repo)
        if top.returncode != 0:
            raise UserError(f"{repo}: not a git repository; `ift verify` checks committed results")
        repo = Path(top.stdout.strip())
    workdir = repo if here else Path(tempfile.mkdtemp(prefix="ift-verify-"))
    committed = Path(tempfile.mkdtemp(prefix="ift-committed-"))
    try:
        if here:
            # Right after `dvc repro` on a fresh clone (CI) this checkout is a rebuild from scratch.
            refuse_changed_code(repo)
            export_head(repo, committed)
            refuse_stale(committed, "run `dvc repro` and commit dvc.lock and the metrics")
        else:
            rebuild(repo, workdir, committed)
        ok, report = check(committed, workdir, force, tolerance)
        print(report)
        return ok
    finally:
        shutil.rmtree(committed, ignore_errors=True)
        if keep:
            print(f"kept {workdir}", file=sys.stderr)
        elif not here:  # (here, it is the user's own checkout)
            shutil.rmtree(workdir, ignore_errors=True)
