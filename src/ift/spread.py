"""`ift spread`: how much every metric moves from run to run on this environment.

Another environment rounds floats differently, which sends the tiny model's pretraining
and the finetuning down another path, much as another seed would. So the committed
pipeline is rerun with a few other seeds (`dvc exp run -S seed=N`, in a temporary copy),
with the data seed held at the committed one so that the test set stays the same, and
the standard deviation of each metric over those runs is written to reports/spread.json,
which `ift verify` counts in its statistical rule.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from tqdm.auto import tqdm

from ift.config import load_params
from ift.errors import UserError
from ift.io import write_json
from ift.verify import SPREAD_FILE, export_head, read_environments, read_metrics, stale_reasons, subprocess_env

DEFAULT_SEEDS = [1, 2, 3, 4, 5]  # five runs: a standard deviation with four degrees of freedom


def sweep(copy: Path, seeds: list[int], data_seed: int) -> dict[int, dict[str, dict[str, float]]]:
    """Metrics of the pipeline in `copy` rerun once per seed, with the data seed fixed."""
    import subprocess

    runs = {}
    for seed in tqdm(seeds, desc="seed sweep", unit="run"):
        # ++ sets data.seed even where a data preset of the user's does not list it.
        cmd = ["dvc", "exp", "run", "-S", f"seed={seed}", "-S", f"++data.seed={data_seed}"]
        print(f"$ {' '.join(cmd)}", file=sys.stderr, flush=True)
        done = subprocess.run(cmd, cwd=copy, env=subprocess_env(copy), text=True)
        if done.returncode != 0:
            raise UserError(f"`{' '.join(cmd)}` failed in {copy} (exit {done.returncode}); see its output above")
        runs[seed] = read_metrics(copy)
    return runs


def summarize(runs: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """{"mean": ..., "std": ...}, each {report dir: {metric: value}}, over the runs (sample std)."""
    first = next(iter(runs.values()))
    out: dict[str, dict[str, dict[str, float]]] = {"mean": {}, "std": {}}
    for where, metrics in first.items():
        for key in metrics:
            values = [run[where][key] for run in runs.values() if key in run.get(where, {})]
            out["mean"].setdefault(where, {})[key] = statistics.fmean(values)
            out["std"].setdefault(where, {})[key] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def measure_spread(repo: Path, seeds: list[int], keep: bool = False) -> dict:
    """Rerun the committed pipeline once per seed; write and return reports/spread.json's content."""
    if len(seeds) < 2:
        raise UserError(f"--seeds {' '.join(map(str, seeds))}: give at least two seeds (five by default)")
    copy = Path(tempfile.mkdtemp(prefix="ift-spread-"))
    try:
        export_head(repo, copy)
        reasons = stale_reasons(copy)
        if reasons:
            raise UserError("the committed dvc.lock is stale (" + "; ".join(reasons) +
                            "): run `dvc repro` and commit first; the spread belongs to committed results")
        params = load_params(copy / "params.yaml")
        data_seed = params.seed if params.data.seed is None else params.data.seed
        runs = sweep(copy, seeds, data_seed)
        result = {"seeds": seeds, "data_seed": data_seed, **summarize(runs),
                  "runs": {str(seed): metrics for seed, metrics in runs.items()},
                  "environment": read_environments(copy)}
        write_json(repo / SPREAD_FILE, result)
        return result
    finally:
        if keep:
            print(f"kept {copy}", file=sys.stderr)
        else:
            shutil.rmtree(copy, ignore_errors=True)


def markdown(result: dict) -> str:
    """The spread as a table: each metric's mean and standard deviation over the seeds."""
    lines = [f"Run-to-run spread over seeds {', '.join(map(str, result['seeds']))} "
             f"(data seed {result['data_seed']}):", "",
             "| file | metric | mean | std |", "| --- | --- | ---: | ---: |"]
    for where, metrics in result["std"].items():
        for key, std in metrics.items():
            if not key.endswith("_stderr"):
                lines.append(f"| {where} | {key} | {result['mean'][where][key]:.6g} | {std:.3g} |")
    return "\n".join(lines)
