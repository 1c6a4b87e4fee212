"""Our train step, timed: tokens/s and MFU on the pythia-70m shape; seconds per step of options.

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
from benchmarks.workloads import (
    alpaca_like_lengths,
    demo_dataset,
    non_embedding_parameters,
    pythia_70m_shaped_model,
    synthetic_dataset,
)
from ift.config import LoraConfig, TrainConfig, as_dict, load_params, validate


def bench_train(tokenizer, cfg: TrainConfig, steps: int = 8, warmup: int = 2) -> dict[str, Any]:
    """Our train step on the pythia-70m shape: non-padding tokens/s, model FLOP/s and MFU."""
    from ift.trainer import make_trainer, uses_bf16

    model = pythia_70m_shaped_model().train()
    examples_per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    dataset = synthetic_dataset(alpaca_like_lengths(examples_per_step * (steps + 1)), vocab=len(tokenizer))
    cfg = timed_config(cfg, steps)
    clock = StepClock(warmup)
    with tempfile.TemporaryDirectory(prefix="ift-bench-train-") as work_dir:
        trainer = make_trainer(model, tokenizer, dataset, cfg, 0, Path(work_dir), [clock])
        counter = trainer.data_collator = RealTokenCounter(trainer.data_collator)
        trainer.train()
    micro = cfg.gradient_accumulation_steps
    tokens = sum(counter.counts[warmup * micro: steps * micro])
    use_bf16 = uses_bf16(cfg)
    peak = matmul_peak(torch.bfloat16 if use_bf16 else torch.float32)
    tokens_per_second = tokens / clock.seconds
    flops = 6 * non_embedding_parameters(model) * tokens_per_second
    return {"tokens_per_second": tokens_per_second, "model_flops_per_second": flops,
            "matmul_peak_flops_per_second": peak, "precision": "bf16 autocast" if use_bf16 else "fp32",
            "mfu": flops / peak, "non_embedding_parameters": non_embedding_parameters(model),
            "examples_per_step": examples_per_step, "measured_steps": steps - warmup}


def step_seconds(model, tokenizer, dataset, cfg: TrainConfig, steps: int, trainer_class=None) -> float:
    """Mean seconds per optimizer step after one warm-up step (`trainer_class`: another trainer)."""
    from ift.trainer import make_trainer

    clock = StepClock(1)
    with tempfile.TemporaryDirectory(prefix="ift-bench-lever-") as work_dir:
        trainer = make_trainer(model, tokenizer, dataset, timed_config(cfg, steps), 0, Path(work_dir), [clock],
                               trainer_class=trainer_class)
        trainer.train()
    return clock.seconds / (steps - 1)


def tiny_step_seconds(copy: Path, change: dict, steps: int = 30, dataset=None) -> float:
    """Seconds per step of the tiny base model with train/default + `change`, on `dataset`
    (tokenized with the base model's tokenizer; None: the demo's training split)."""
    from ift.modeling import load_model, load_tokenizer

    params = load_params(copy / "params.yaml")
    tokenizer = load_tokenizer(copy / "models/base")
    cfg = TrainConfig(**{**vars(params.train), **change})
    if dataset is None:
        dataset = demo_dataset(copy, tokenizer, params.train.max_length)
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


def footprint(tokenizer_dir: Path, cfg: TrainConfig, steps: int = 6) -> dict[str, float]:
    """bench_train with `cfg` in this process, and the process's peak memory (RSS) while training.

    Run it in a fresh process (train_footprints): the peak only ever grows.
    """
    from ift.modeling import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    before = peak_rss_mib()
    measured = bench_train(tokenizer, cfg, steps=steps, warmup=2)
    peak = peak_rss_mib()
    return {"tokens_per_second": measured["tokens_per_second"], "peak_rss_mib": peak,
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
    if sys.argv[1] == "footprint":
        cfg = validate({"train": json.loads(sys.argv[3])}).train
        print(json.dumps(footprint(Path(sys.argv[2]), cfg)))
    else:
        print(tiny_step_seconds(Path(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])))
