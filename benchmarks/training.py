"""Our train step, timed against TRL's as a user writes it: tokens/s and MFU on the pythia-70m
shape; seconds per step of options.

python -m benchmarks.training step-seconds COPY CHANGE_JSON STEPS  prints tiny_step_seconds;
python -m benchmarks.training footprint TOKENIZER_DIR TRAIN_JSON  prints footprint (both in a new process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.clocks import RealTokenCounter, StepClock, matmul_peak, timed_config
from benchmarks.flops import HOW_COUNTED, required_flops
from benchmarks.step_profile import ProfiledSteps, mfu_bound, profiled_shares
from benchmarks.workloads import alpaca_like_lengths, demo_dataset, pythia_shaped_model, synthetic_dataset
from ift.config import LoraConfig, TrainConfig, as_dict, load_params, validate


def timed_training(make_trainer, steps: int, warmup: int) -> dict[str, Any]:
    """Train with `make_trainer(work_dir, callbacks)`'s trainer; time the steps after `warmup`.

    Returns the seconds, the examples of the timed steps as (tokens, labelled tokens), and
    every logged loss.
    """
    clock = StepClock(warmup)
    with tempfile.TemporaryDirectory(prefix="ift-bench-train-") as work_dir:
        trainer = make_trainer(Path(work_dir), [clock])
        counter = trainer.data_collator = RealTokenCounter(trainer.data_collator)
        trainer.train()
    micro = trainer.args.gradient_accumulation_steps
    examples = [example for batch in counter.batches[warmup * micro: steps * micro] for example in batch]
    return {"seconds": clock.seconds, "warmup_seconds": clock.warmup_seconds, "examples": examples,
            "losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
            "batches": counter.batches}


def throughput(model, measured: dict[str, Any], peak: float | None) -> dict[str, Any]:
    """Tokens/s, supervised (labelled) tokens/s, and the FLOPs the timed steps must do over the
    peak (the MFU; none without a peak)."""
    flops = required_flops(model, measured["examples"])
    seconds = measured["seconds"]
    mfu = {"mfu": flops["total"] / seconds / peak} if peak is not None else {}
    return {"tokens_per_second": sum(n for n, _ in measured["examples"]) / seconds,
            "supervised_tokens_per_second": sum(k for _, k in measured["examples"]) / seconds,
            "required_flops_per_second": {part: value / seconds for part, value in flops.items()}, **mfu}


def bench_train(tokenizer, cfg: TrainConfig, steps: int = 8, warmup: int = 2, against_trl: bool = True,
                mfu: bool = True) -> dict[str, Any]:
    """Our train step on the pythia-70m shape, and TRL's SFTTrainer as a user writes it, on the
    same examples in the same order from the same initial weights: tokens/s, supervised
    tokens/s, MFU and where our step's time goes (unless `mfu` is off: the matmul peak takes
    seconds to measure, the profiled run as long as ours), and the logged losses of the first
    steps."""
    from benchmarks.peers import trl_sft_trainer
    from ift.trainer import make_trainer, uses_bf16

    examples_per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    # At most max_length tokens, which our stage keeps (and TRL's default of 1,024 never cuts).
    lengths = [pair for pair in alpaca_like_lengths(4 * examples_per_step * (steps + 1)) if sum(pair) <= cfg.max_length]
    dataset = synthetic_dataset(lengths[: examples_per_step * (steps + 1)], vocab=len(tokenizer))
    ours_cfg = TrainConfig(**{**vars(timed_config(cfg, steps)), "logging_steps": 1})
    use_bf16 = uses_bf16(cfg)
    peak_dtype = torch.bfloat16 if use_bf16 else torch.float32
    peak_readings = [matmul_peak(peak_dtype)] if mfu else []

    def ours_on(model, *extra_callbacks):
        return timed_training(lambda work_dir, callbacks: make_trainer(model, tokenizer, dataset, ours_cfg, 0, work_dir,
                                                                       [*callbacks, *extra_callbacks]), steps, warmup)

    model = pythia_shaped_model().train()
    ours = ours_on(model)
    if mfu:  # read again after our steps: a slow stretch of the machine during one reading would inflate the MFU
        peak_readings.append(matmul_peak(peak_dtype))
    peak = max(peak_readings) if peak_readings else None
    result = {**throughput(model, ours, peak), "warmup_seconds": ours["warmup_seconds"],
              "compile_loss": cfg.compile_loss, "matmul_peak_flops_per_second": peak,
              "matmul_peak_readings": peak_readings,
              "precision": "bf16 autocast" if use_bf16 else "fp32", "flops_counted_as": HOW_COUNTED,
              "examples_per_step": examples_per_step, "measured_steps": steps - warmup, "losses": ours["losses"]}
    if mfu:  # a run of its own: the profiler's overhead stays out of the timed steps
        ours_on(pythia_shaped_model().train(), profiled := ProfiledSteps(warmup))
        shares = profiled_shares(profiled, model.get_output_embeddings().weight.shape[0])
        result |= {"step_time_shares": shares,
                   "mfu_if_matmul_and_attention_took_no_time": mfu_bound(result["mfu"], shares)}
    if against_trl:
        peer_model = pythia_shaped_model().train()
        theirs = timed_training(lambda work_dir, callbacks: trl_sft_trainer(peer_model, tokenizer, dataset, cfg, steps,
                                                                            work_dir, callbacks), steps, warmup)
        if theirs["batches"] != ours["batches"]:
            raise RuntimeError("TRL's trainer saw other batches than ours: the comparison would not be like for like")
        first = min(3, len(ours["losses"]))
        result["trl"] = {**throughput(peer_model, theirs, peak), "warmup_seconds": theirs["warmup_seconds"],
                         "losses": theirs["losses"],
                         "first_steps_compared": first,
                         "max_relative_loss_difference": max(abs(a - b) / abs(b) for a, b in
                                                             zip(ours["losses"][:first], theirs["losses"][:first]))}
        result["speedup_vs_trl"] = (result["supervised_tokens_per_second"]
                                    / result["trl"]["supervised_tokens_per_second"])
    return result


def step_seconds(model, tokenizer, dataset, cfg: TrainConfig, steps: int, trainer_class=None) -> float:
    """Mean seconds per optimizer step after one warm-up step (`trainer_class`: another trainer)."""
    from ift.trainer import make_trainer

    clock = StepClock(1)
    with tempfile.TemporaryDirectory(prefix="ift-bench-lever-") as work_dir:
        trainer = make_trainer(model, tokenizer, dataset, timed_config(cfg, steps), 0, Path(work_dir), [clock],
                               trainer_class=trainer_class)
        trainer.train()
    return clock.seconds / (steps - 1)


def default_train_config(copy: Path, change: dict) -> TrainConfig:
    """`copy`'s params.yaml train settings (train/default) with `change` applied."""
    return TrainConfig(**{**vars(load_params(copy / "params.yaml").train), **change})


def tiny_step_seconds(copy: Path, change: dict, steps: int = 30, dataset=None) -> float:
    """Seconds per step of the tiny base model with train/default + `change`, on `dataset`
    (tokenized with the base model's tokenizer; None: the demo's training split)."""
    from ift.modeling import load_model, load_tokenizer

    tokenizer = load_tokenizer(copy / "models/base")
    cfg = default_train_config(copy, change)
    if dataset is None:
        dataset = demo_dataset(copy, tokenizer, cfg.max_length)
    return step_seconds(load_model(copy / "models/base"), tokenizer, dataset, cfg, steps)


def fresh_process_step_seconds(copy: Path, change: dict, steps: int = 100) -> float:
    """tiny_step_seconds on the demo data in a new Python process, as a train stage runs.

    Each matmul shape costs set-up time the first time a process meets it (oneDNN, for bf16
    on CPU): measured in one long-running process, where shapes repeat, unrounded packed
    rows look far cheaper than they are in a stage.
    """
    out = subprocess.run([sys.executable, "-m", "benchmarks.training", "step-seconds", str(copy), json.dumps(change),
                          str(steps)],
                         cwd=copy, check=True, capture_output=True, text=True,
                         env={**os.environ, "TQDM_DISABLE": "1"}).stdout
    return float(out.split()[-1])


def peak_rss_mib() -> float:
    """This process's peak resident memory: Linux's VmHWM, which, unlike getrusage's ru_maxrss,
    does not carry over the parent's memory from before exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (the memory measurement needs Linux)")


def footprint(tokenizer_dir: Path, cfg: TrainConfig, steps: int = 2) -> dict[str, float]:
    """bench_train with `cfg` in this process, and the process's peak memory (RSS) while training.

    Run it in a fresh process (train_footprints): the peak only ever grows.
    """
    from ift.modeling import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    before = peak_rss_mib()
    measured = bench_train(tokenizer, cfg, steps=steps, warmup=1, against_trl=False, mfu=False)
    peak = peak_rss_mib()
    return {"tokens_per_second": measured["tokens_per_second"], "measured_steps": measured["measured_steps"],
            "peak_rss_mib": peak,
            "peak_rss_over_start_mib": peak - before}


def train_footprints(tokenizer_dir: Path, cfg: TrainConfig) -> dict[str, dict[str, float]]:
    """Full finetuning against LoRA (train.lora defaults) on the pythia-70m shape, each in a new process."""
    options = {"full finetuning": cfg, "LoRA": TrainConfig(**{**vars(cfg), "lora": LoraConfig(enabled=True)})}
    results = {}
    for name, option in options.items():
        out = subprocess.run([sys.executable, "-m", "benchmarks.training", "footprint", str(tokenizer_dir),
                              json.dumps(as_dict(option))], cwd=Path(__file__).resolve().parents[1],
                             check=True, capture_output=True, text=True,
                             env={**os.environ, "TQDM_DISABLE": "1"}).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
    return results


if __name__ == "__main__":
    from ift.memory import keep_freed_memory_where_set

    # Each new process stands for a train stage, which first sets up malloc as its config says.
    if sys.argv[1] == "footprint":
        cfg = validate({"train": json.loads(sys.argv[3])}).train
        keep_freed_memory_where_set(cfg)
        print(json.dumps(footprint(Path(sys.argv[2]), cfg)))
    else:
        copy, change = Path(sys.argv[2]), json.loads(sys.argv[3])
        keep_freed_memory_where_set(default_train_config(copy, change))
        print(tiny_step_seconds(copy, change, int(sys.argv[4])))
