"""Timers and counters: progress lines, the machine's matmul peak, optimizer-step timing, real-token counting."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import torch
from transformers import TrainerCallback

from ift.config import TrainConfig
from ift.tokenization import IGNORE_INDEX

STARTED = time.perf_counter()  # (the benchmark imports this module as it starts)


def phase(message: str) -> None:
    """A progress line on stderr, with the time since the benchmark started."""
    print(f"[{time.perf_counter() - STARTED:4.0f} s] {message}", file=sys.stderr, flush=True)


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of a size x size matrix multiply in `dtype` (the machine's practical peak)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        best = max(best, 2 * size**3 * 10 / (time.perf_counter() - start))
    return best


class StepClock(TrainerCallback):
    """Times optimizer steps after `warmup` of them: `seconds` covers the steps after it,
    `warmup_seconds` the warm-up steps (compilation, first matmul shapes)."""

    def __init__(self, warmup: int):
        self.warmup, self.begin, self.start, self.end = warmup, None, None, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.begin = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.start = time.perf_counter()
        self.end = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def warmup_seconds(self) -> float:
        return self.start - self.begin


class StepTimes(TrainerCallback):
    """perf_counter() when training starts and at the end of every optimizer step: the first
    step's time apart (compilation, first matmul shapes) from the steps after it."""

    def __init__(self):
        self.times: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.times = [time.perf_counter()]

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter())

    def first_and_later(self) -> dict[str, float]:
        """Seconds of the first step, and mean seconds per step of the others."""
        first, rest = self.times[1] - self.times[0], self.times[-1] - self.times[1]
        return {"first_step_seconds": first, "later_step_seconds": rest / max(len(self.times) - 2, 1)}


def labelled_tokens(example: dict) -> int:
    """Tokens with a label: TRL turns the completion mask into labels before collating."""
    if "completion_mask" in example:
        return sum(example["completion_mask"])
    return sum(label != IGNORE_INDEX for label in example.get("labels", ()))


class RealTokenCounter:
    """A collator wrapper recording the examples it is given, as (tokens, labelled tokens) per
    micro-batch: whatever else a batch holds (padding, pad examples in a packed row) is what
    the collator added."""

    def __init__(self, collate):
        self.collate, self.batches = collate, []

    def __call__(self, examples: list[dict]) -> dict:
        self.batches.append([(len(example["input_ids"]), labelled_tokens(example)) for example in examples])
        return self.collate(examples)

    @property
    def counts(self) -> list[int]:
        """Tokens per micro-batch."""
        return [sum(n for n, _ in batch) for batch in self.batches]


def padding_waste(trainer) -> float:
    """Padding tokens / all tokens in one epoch of the trainer's own dataloader and collator."""
    counter = RealTokenCounter(trainer.data_collator)
    trainer.data_collator = counter
    try:
        total = sum(batch["input_ids"].numel() for batch in trainer.get_train_dataloader())
    finally:
        trainer.data_collator = counter.collate
    return (total - sum(counter.counts)) / total


def timed_config(cfg: TrainConfig, steps: int) -> TrainConfig:
    """`cfg` for a timing run: `steps` optimizer steps, no checkpoints, no logging."""
    return TrainConfig(**{**vars(cfg), "max_steps": steps, "save_steps": 0, "logging_steps": 10**6})


def in_both_orders(options: list[tuple], measure: Callable[..., float]) -> dict[str, float]:
    """measure(*option[1:]) for each option, run in list order and then in reverse, averaged.

    Within one run the position in the sequence alone moves step speeds a lot on a shared
    machine, so a single pass would rank options by their position.
    """
    values: dict[str, list[float]] = {option[0]: [] for option in options}
    for name, *args in options + options[::-1]:
        values[name].append(measure(*args))
    return {name: statistics.mean(measured) for name, measured in values.items()}
