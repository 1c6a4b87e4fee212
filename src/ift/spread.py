"""`ift spread`: how much every metric moves from run to run on this machine.

Another environment rounds floats differently, which sends the tiny model's pretraining and
the finetuning down another path. `ift spread` reruns the committed pipeline (in a temporary
copy) a few times and writes the standard deviation of each metric over those runs and the
committed one; `ift verify` counts it in its statistical rule. Two kinds of rerun:

- `--by rounding` (the default, reports/spread.json): what another environment changes, the
  rounding. Each rerun uses other kernels of this machine on the same seeds and data: torch's
  AVX2 or scalar vector code instead of its best, one thread instead of all, and other matrix
  multiply kernels (MKL's AVX2 code for fp32, oneDNN's plain AVX-512 code for bf16), which is
  what differs most between CPU types.
- `--by seed` (reports/seed_spread.json): `dvc exp run -S seed=N` with data.seed held, so
  data, test set and the tiny model's pretraining corpus stay the same. This measures how
  much the recipe depends on its seed, which on the default is far more than rounding moves
  it (README, Guarantees).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from tqdm.auto import tqdm

from ift.config import data_seed, load_params
from ift.environment import KERNEL_ENV_VARS
from ift.errors import UserError
from ift.io import write_json
from ift.verify import (
    GUARANTEED_SHIFT_STDERRS,
    NOISE_SIGMAS,
    SPREAD_FILE,
    allowed_stderrs,
    environment_hashes,
    export_head,
    read_environments,
    read_metrics,
    refuse_stale,
    run_in_copy,
)

DEFAULT_SEEDS = [1, 2, 3, 4, 5]  # five runs: a standard deviation with four degrees of freedom
SEED_SPREAD_FILE = "reports/seed_spread.json"
# Settings that make torch round differently on the same machine: other vector kernels
# (ATEN_CPU_CAPABILITY, which leave matrix multiplies alone), another split of parallel sums
# (threads) and other matrix multiply kernels: MKL's (fp32 GEMM on x86) and oneDNN's (bf16
# autocast; fp32 too on some CPUs). Each is recorded in reports/environment/, so verify sees
# them as another environment.
ROUNDING_SETTINGS = {
    "avx2 kernels": {"ATEN_CPU_CAPABILITY": "avx2"},
    "scalar kernels": {"ATEN_CPU_CAPABILITY": "default"},
    "one thread": {"OMP_NUM_THREADS": "1"},
    "avx2 kernels, one thread": {"ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "1"},
    "MKL's AVX2 matmuls": {"MKL_CBWR": "AVX2"},
    "oneDNN's AVX-512 matmuls": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
}


def _run(cmd: list[str], copy: Path, env: dict[str, str] | None = None) -> None:
    """Run `cmd` in `copy` with the kernel settings `env` and none of the caller's own."""
    print("$ " + " ".join([*(f"{k}={v}" for k, v in (env or {}).items()), *cmd]), file=sys.stderr, flush=True)
    run_in_copy(cmd, copy, env, drop=KERNEL_ENV_VARS)


def rounding_sweep(copy: Path, settings: dict[str, dict[str, str]]) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics of the pipeline in `copy` rebuilt once per kernel setting (same seeds, same data)."""
    runs = {}
    for name, env in tqdm(settings.items(), desc="rounding sweep", unit="run"):
        _run(["dvc", "repro", "--force"], copy, env)
        runs[name] = read_metrics(copy)
    return runs


def seed_sweep(copy: Path, seeds: list[int], fixed_data_seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics of the pipeline in `copy` rerun once per seed, with the data seed held."""
    runs = {}
    for seed in tqdm(seeds, desc="seed sweep", unit="run"):
        # ++ sets data.seed even where a data preset of the user's does not list it.
        _run(["dvc", "exp", "run", "-S", f"seed={seed}", "-S", f"++data.seed={fixed_data_seed}"], copy)
        runs[f"seed {seed}"] = read_metrics(copy)
    return runs


def distinct(reports: list[dict[str, float]]) -> list[dict[str, float]]:
    """The reports that differ from every earlier one.

    A setting that changes nothing a report depends on (AVX2 kernels on a CPU without AVX-512,
    one thread on one core, oneDNN's kernels for a base model whose fp32 matmuls are MKL's)
    rebuilds it to the same metrics; counted again, it would shrink the spread.
    """
    kept: list[dict[str, float]] = []
    for report in reports:
        if report not in kept:
            kept.append(report)
    return kept


def summarize(runs: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """{"mean": ..., "std": ...}, each {report dir: {metric: value}}, over the runs (sample std),
    each report dir over its distinct results only."""
    first = next(iter(runs.values()))
    out: dict[str, dict[str, dict[str, float]]] = {"mean": {}, "std": {}}
    for where, metrics in first.items():
        reports = distinct([run[where] for run in runs.values() if where in run])
        for key in metrics:
            values = [report[key] for report in reports if key in report]
            out["mean"].setdefault(where, {})[key] = statistics.fmean(values)
            out["std"].setdefault(where, {})[key] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def measure_spread(repo: Path, by: str = "rounding", seeds: list[int] | None = None, keep: bool = False) -> dict:
    """Rerun the committed pipeline as `by` says; write and return the spread file's content."""
    if by != "seed" and seeds is not None:
        raise UserError("--seeds goes with --by seed (the rounding sweep keeps the committed seed)")
    seeds = DEFAULT_SEEDS if seeds is None else seeds
    if by == "seed" and len(seeds) < 2:
        raise UserError(f"--seeds {' '.join(map(str, seeds))}: give at least two seeds (five by default)")
    copy = Path(tempfile.mkdtemp(prefix="ift-spread-"))
    try:
        export_head(repo, copy)
        refuse_stale(copy, "run `dvc repro` and commit first; the spread belongs to committed results")
        if by == "seed":
            fixed = data_seed(load_params(copy / "params.yaml"))
            runs = seed_sweep(copy, seeds, fixed)
            result = {"by": "seed", "seeds": seeds, "data_seed": fixed, "environment": read_environments(copy)}
        else:
            committed_environment = environment_hashes(copy / "dvc.lock")
            _run(["dvc", "repro"], copy)  # this machine as it is: one of the runs, and its environment records
            if environment_hashes(copy / "dvc.lock") != committed_environment:
                raise UserError("this is not the environment that made the committed results (ift verify would "
                                "compare statistically here): measure the spread where they were made")
            runs = {"unperturbed": read_metrics(copy)}
            result = {"by": "rounding", "settings": ROUNDING_SETTINGS, "environment": read_environments(copy)}
            runs.update(rounding_sweep(copy, ROUNDING_SETTINGS))
        result = {**result, **summarize(runs), "runs": runs}
        write_json(repo / (SEED_SPREAD_FILE if by == "seed" else SPREAD_FILE), result)
        return result
    finally:
        if keep:
            print(f"kept {copy}", file=sys.stderr)
        else:
            shutil.rmtree(copy, ignore_errors=True)


def markdown(result: dict) -> str:
    """The spread as a table: each metric's mean and standard deviation over the runs; for the
    rounding spread (the one `ift verify` reads), also the difference it allows an eval metric on
    another environment, in the committed standard errors (the unperturbed run's)."""
    from ift.statistics import EVAL_METRICS, stderr_key  # (scipy: not at `ift` start-up)

    by_seed = result["by"] == "seed"
    over = (f"seeds {', '.join(map(str, result['seeds']))} (data seed {result['data_seed']})"
            if by_seed else "this machine as it is and with " + "; ".join(result["settings"]))
    if by_seed:
        lines = [f"Run-to-run spread over {over}:", "", "| file | metric | mean | std |", "| --- | --- | ---: | ---: |"]
    else:
        lines = [f"Run-to-run spread over {over}; `allowed`: the difference `ift verify` allows an eval metric "
                 f"on another environment ({NOISE_SIGMAS:g} sigma, README, Guarantees), in committed standard "
                 "errors:", "",
                 "| file | metric | mean | std | allowed |", "| --- | --- | ---: | ---: | ---: |"]
    too_wide = []
    for where, metrics in result["std"].items():
        for key, std in metrics.items():
            if key.endswith("_stderr"):
                continue
            row = f"| {where} | {key} | {result['mean'][where][key]:.6g} | {std:.3g} |"
            if not by_seed:
                committed = result["runs"]["unperturbed"][where]
                stderr = committed.get(stderr_key(key), 0.0) if key in EVAL_METRICS else 0.0
                allowed = allowed_stderrs(stderr, std) if stderr > 0 else None
                row += " - |" if allowed is None else f" {allowed:.1f} |"
                if allowed is not None and allowed > GUARANTEED_SHIFT_STDERRS:
                    too_wide.append(f"{where} {key} ({allowed:.1f})")
            lines.append(row)
    if too_wide:
        lines += ["", f"**Over the guarantee**: {', '.join(too_wide)} may move more than "
                  f"{GUARANTEED_SHIFT_STDERRS:g} standard errors unseen. Committed, this spread fails "
                  "tests/test_verify.py, which holds that a shift that large fails `ift verify`: these "
                  "results are too sensitive to rounding to commit as they are."]
    return "\n".join(lines)
