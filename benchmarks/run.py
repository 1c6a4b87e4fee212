"""All measurements on the committed code, in a fresh copy of HEAD; writes bench.json and bench.md."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.clocks import padding_waste, phase
from benchmarks.generation import bench_eval, bench_long_answers
from benchmarks.pipeline import bench_pipeline, bench_queue
from benchmarks.report import markdown, targets
from benchmarks.training import bench_train, train_footprints
from benchmarks.workloads import (
    alpaca_like_lengths,
    demo_dataset,
    lamini_like_prompts,
    pythia_shaped_model,
    synthetic_dataset,
)
from ift.config import load_params
from ift.errors import UserError

# What the measurements run: the pipeline from a copy of HEAD, the rest from this checkout.
MEASURED_PATHS = ("src", "benchmarks", "stages", "conf", "params.yaml", "dvc.yaml", "dvc.lock")


def refuse_uncommitted(repo: Path) -> None:
    """A UserError unless the code measured in this process is HEAD's code in `repo`.

    The pipeline runs from a copy of HEAD and the in-process measurements from the `ift`
    this process imported: with uncommitted changes, or `ift` installed from another
    checkout, the report could match neither.
    """
    import ift

    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=repo, capture_output=True, text=True)
    if top.returncode != 0:
        raise UserError(f"{repo}: not a git repository; `ift bench` measures the committed code")
    root = Path(top.stdout.strip())
    if Path(ift.__file__).resolve().parent != (root / "src" / "ift").resolve():
        raise UserError(f"ift is imported from {Path(ift.__file__).parent}, not from {root / 'src'}: "
                        f"install this checkout (`pip install -c requirements.lock -e .`) or run from the other one")
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *MEASURED_PATHS],
                            cwd=root, capture_output=True, text=True)
    changed = [line[3:] for line in status.stdout.splitlines()]
    if changed:
        raise UserError(f"{root}: uncommitted changes in {', '.join(changed)}; `ift bench` measures the "
                        "committed code: commit or stash them first")


def run(repo: Path, out_dir: Path, train_preset: str = "pythia-70m", levers: bool = False) -> dict[str, Any]:
    """All measurements; writes out_dir/bench.json and out_dir/bench.md."""
    from ift.config import compose, validate
    from ift.environment import cpu
    from ift.generation import fitted_max_new_tokens
    from ift.io import read_json, read_jsonl, write_json, write_text
    from ift.memory import keep_freed_memory_where_set
    from ift.modeling import load_model, load_tokenizer
    from ift.trainer import make_trainer
    from ift.verify import export_head

    refuse_uncommitted(repo)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                            check=True).stdout.strip()
    copy = Path(tempfile.mkdtemp(prefix="ift-bench-"))
    try:
        export_head(repo, copy)
        phase("pipeline: the committed default pipeline from scratch")
        pipeline = bench_pipeline(copy)
        params = load_params(copy / "params.yaml")
        tokenizer = load_tokenizer(copy / "models/base", padding_side="left")
        prompts = [row["input"] for row in read_jsonl(copy / "data/hydrated/test.jsonl")]
        # What the eval stages generate (eval.max_new_tokens=null: the longest training answer).
        max_new_tokens = fitted_max_new_tokens(params.eval.max_new_tokens, read_json(copy / "data/hydrated/stats.json"))

        phase("eval: tuned tiny model vs batched generate() and the tutorial's loop")
        tiny = bench_eval(load_model(copy / "models/tuned"), load_tokenizer(copy / "models/tuned", "left"),
                          prompts, max_new_tokens, params.eval.batch_size, tutorial_prompts=500)
        phase("eval: pythia-70m shape vs batched generate() and the tutorial's loop")
        # Four batches: a single one takes about a second, and such short readings drift by more
        # than the target's margin from run to run.
        pythia = bench_eval(pythia_shaped_model(), tokenizer, prompts[:4 * params.eval.batch_size],
                            max_new_tokens, params.eval.batch_size, tutorial_prompts=8)
        phase("eval: long answers (lamini_docs-like) on the pythia-70m shape vs the tutorial's loop")
        long_answers = bench_long_answers(pythia_shaped_model(), tokenizer,
                                          lamini_like_prompts(tokenizer, params.eval.batch_size), tutorial_prompts=4,
                                          batch_size=params.eval.batch_size)

        phase(f"train: pythia-70m shape with train={train_preset}, ours vs TRL as a user writes it")
        train_cfg = validate(compose([f"train={train_preset}"], copy / "conf")).train
        # As the train stage does. Where it keeps freed memory, TRL runs in this process and gains
        # from it too: were it run as a user's own script, without it, the ratio would be larger.
        keep_freed_memory_where_set(train_cfg)
        # Two steps timed after a warm-up: a train stage's first steps page-fault through memory
        # that later ones reuse, which would weigh on one timed step alone. No more: TRL's steps
        # are slow, and `ift bench` has ten minutes.
        train = bench_train(tokenizer, train_cfg, steps=3, warmup=1)
        phase("train: full finetuning vs LoRA, memory and tokens/s")
        footprints = train_footprints(copy / "models/base", train_cfg)
        # Padding waste with the train settings each kind of data is used with: the demo with
        # train/default (model=tiny), alpaca-like lengths with train/<train_preset>.
        waste = {}
        for name, dataset, cfg in (
            ("demo", demo_dataset(copy, tokenizer, params.train.max_length), params.train),
            ("alpaca_like", synthetic_dataset(alpaca_like_lengths(2000), vocab=len(tokenizer)), train_cfg),
        ):
            with tempfile.TemporaryDirectory(prefix="ift-bench-waste-") as work_dir:
                trainer = make_trainer(pythia_shaped_model(), tokenizer, dataset, cfg, 0, Path(work_dir))
                waste[name] = padding_waste(trainer)
        phase("queue: two experiments one at a time vs two at a time (dvc queue start -j 1, -j 2)")
        queue = bench_queue(copy)
        if levers:
            phase("levers: every option against the one kept")
            from benchmarks.levers import bench_levers

            lever_results = bench_levers(copy, params, train_cfg)
    finally:
        shutil.rmtree(copy, ignore_errors=True)

    processor = cpu()
    results = {
        "commit": commit,  # refuse_uncommitted: the measured code is exactly this commit's
        # The CPU type decides the floats and the kernels, so the reading names it (ift.environment).
        "machine": f"{platform.processor() or platform.machine()} ({processor['model']}: "
                   f"{', '.join(processor['features']) or 'none of the listed features'}; "
                   f"torch's {processor['torch_capability']} kernels), "
                   f"{os.cpu_count()} cores, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"),
        "train_preset": train_preset,
        "train_speedup_vs_trl": train["speedup_vs_trl"],
        "train_loss_vs_trl_max_relative_difference": train["trl"]["max_relative_loss_difference"],
        "train_mfu": train["mfu"],
        "generate_speedup_vs_batched_generate": {"tiny": tiny["speedup_vs_batched_generate"],
                                                 "pythia70m": pythia["speedup_vs_batched_generate"]},
        "identical_to_batched_generate": {"tiny": tiny["identical_to_batched_generate"],
                                          "pythia70m": pythia["identical_to_batched_generate"]},
        "long_answers_speedup_vs_tutorial_loop": long_answers["speedup"],
        "eval_speedup_vs_tutorial_loop": {"tiny": tiny["speedup"], "pythia70m": pythia["speedup"]},  # a figure
        "train_tokens_per_second": train["tokens_per_second"],
        "padding_waste": waste,
        "noop_repro_seconds": pipeline["noop_repro_seconds"],
        "pipeline_seconds": pipeline["pipeline_seconds"],
        "queue_two_at_a_time_vs_one": queue["ratio"],
        "eval": {"tiny": tiny, "pythia70m": pythia},
        "long_answers": long_answers,
        "train": train,
        "train_footprints": footprints,
        "pipeline": pipeline,
        "queue": queue,
    }
    if levers:
        results["levers"] = lever_results
    results["targets"] = targets(results)
    write_json(out_dir / "bench.json", results)
    write_text(out_dir / "bench.md", markdown(results))
    return results
