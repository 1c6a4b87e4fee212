"""Where a train step's time goes: torch.profiler's operator times, in four parts.

The parts that do the FLOPs MFU counts (matrix multiplies, attention) apart from work
on vocabulary-wide tensors (the loss, log-softmax, entropy, accuracy and casts of the logits,
each as wide as the 50k vocabulary but counted as no FLOPs) and the rest: if the counted parts
took no time at all, MFU could be at most its value over the share of the rest.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import torch
from transformers import TrainerCallback

MATMULS = {"aten::mm", "aten::addmm"}  # the linear layers and the LM head
# Plain (eager, packed_eager) attention: its batched matmuls (the models' linear layers use
# mm/addmm), its softmax and its mask.
EAGER_ATTENTION = {"aten::bmm", "aten::baddbmm", "aten::_softmax", "aten::_softmax_backward_data",
                   "aten::masked_fill_"}
PARTS = ("matmul", "attention", "vocabulary_wide", "other")
COMPILED_GRAPH = "## Call CompiledFxGraph"  # the profiler's name for a torch.compile'd graph's kernels


class ProfiledSteps(TrainerCallback):
    """torch.profiler, with input shapes, over the optimizer steps after `warmup`."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True)
        self.started = False

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.profiler.start()
            self.started = True

    def on_train_end(self, args, state, control, **kwargs):
        if self.started:
            self.profiler.stop()


def part_of(name: str, input_shapes: Iterable, vocab_size: int) -> str:
    """Which part an operator's self time counts for (a matmul of the LM head is a matmul)."""
    if name in MATMULS:
        return "matmul"
    if "scaled_dot_product" in name:
        return "attention"
    if name.startswith(COMPILED_GRAPH):  # what inductor compiled in a step: the loss (train.compile_loss)
        return "vocabulary_wide"
    if any(isinstance(shape, list) and shape and shape[-1] == vocab_size for shape in input_shapes):
        return "vocabulary_wide"
    if name in EAGER_ATTENTION:
        return "attention"
    return "other"


def time_shares(events, vocab_size: int) -> dict[str, float]:
    """{part: share of the operators' self time}, from key_averages(group_by_input_shape=True)."""
    seconds: dict[str, float] = defaultdict(float)
    for event in events:
        seconds[part_of(event.key, event.input_shapes, vocab_size)] += event.self_cpu_time_total
    total = sum(seconds.values()) or 1.0
    return {part: seconds[part] / total for part in PARTS}


def profiled_shares(callback: ProfiledSteps, vocab_size: int) -> dict[str, float]:
    return time_shares(callback.profiler.key_averages(group_by_input_shape=True), vocab_size)


def mfu_bound(mfu: float, shares: dict[str, float]) -> float:
    """MFU if matrix multiplies and attention took no time and the rest stayed as it is."""
    rest = shares["vocabulary_wide"] + shares["other"]
    return mfu / rest if rest else float("inf")
