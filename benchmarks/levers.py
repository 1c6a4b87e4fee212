"""`ift bench --levers`: each training and eval option we considered, against the one we kept.

python -m benchmarks.levers train-times COPY OPTION STEPS  prints train_step_times (in a new process).
python -m benchmarks.levers pythia-step COPY STEPS keep|default [SIZE]  prints pythia_step_seconds (in a new
    process; SIZE: pythia-70m, the default, pythia-160m or pythia-410m).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.clocks import StepTimes, in_both_orders, phase, timed_config
from benchmarks.training import default_train_config, fresh_process_step_seconds, step_seconds, tiny_step_seconds
from benchmarks.workloads import (
    alpaca_like_lengths,
    demo_dataset,
    lamini_like_prompts,
    pythia_shaped_model,
    synthetic_dataset,
)
from ift.config import TrainConfig
from ift.memory import keep_freed_memory, keep_freed_memory_where_set
from ift.trainer import AnswerOnlyHeadSFTTrainer


class ForeachAdamWTrainer(AnswerOnlyHeadSFTTrainer):
    """Our trainer with torch's foreach AdamW: no transformers `optim` name selects it on CPU,
    where AdamW's own default is its for-loop."""

    @staticmethod
    def get_optimizer_cls_and_kwargs(args, model=None):
        optimizer_cls, kwargs = AnswerOnlyHeadSFTTrainer.get_optimizer_cls_and_kwargs(args, model)
        return optimizer_cls, {**kwargs, "foreach": True}


# Options timed over a train stage's first steps, each in a new process (as a stage runs) with
# an empty torch.compile cache (as a first run has): name -> settings.
TRAIN_OPTIONS = {
    "kept": ("kept: train/default (fused AdamW, packed_eager attention, a thread per core, glibc's default "
             "malloc)", {}),
    "compile": ("torch.compile of the model (inductor; compile time counted)", {"compile": True}),
    "foreach": ("foreach AdamW", {"change": {"optim": "adamw_torch"}, "trainer_class": ForeachAdamWTrainer}),
    "compile_loss": ("the loss's vocabulary-wide work compiled (train.compile_loss; compile time counted)",
                     {"change": {"compile_loss": True}}),
    "for_loop": ("for-loop AdamW (transformers' adamw_torch on CPU)", {"change": {"optim": "adamw_torch"}}),
    "flex": ("FlexAttention on the packed rows", {"change": {"attn_implementation": "flex_attention"}}),
    "one_thread": ("one thread", {"threads": 1}),
    "keep_freed_memory": ("glibc keeping freed memory (train.keep_freed_memory)",
                          {"change": {"keep_freed_memory": True}}),
}


def train_step_times(copy: Path, option: str, steps: int) -> dict[str, float]:
    """StepTimes.first_and_later for the tiny base model with train/default and TRAIN_OPTIONS[option],
    on the demo's training split."""
    from ift.modeling import load_model, load_tokenizer
    from ift.trainer import make_trainer

    settings = TRAIN_OPTIONS[option][1]
    cfg = timed_config(default_train_config(copy, settings.get("change", {})), steps)
    keep_freed_memory_where_set(cfg)  # as the train stage does
    if "threads" in settings:
        torch.set_num_threads(settings["threads"])
    tokenizer = load_tokenizer(copy / "models/base")
    model = load_model(copy / "models/base")
    if settings.get("compile"):
        model.compile()  # the forward through inductor, the backward through AOTAutograd
    times = StepTimes()
    with tempfile.TemporaryDirectory(prefix="ift-bench-lever-") as work_dir:
        trainer = make_trainer(model, tokenizer, demo_dataset(copy, tokenizer, cfg.max_length), cfg, 0,
                               Path(work_dir), [times],
                               trainer_class=settings.get("trainer_class"))
        trainer.train()
    return times.first_and_later()


def in_a_new_process(copy: Path, args: list[str]) -> dict[str, Any]:
    """`python -m benchmarks.levers args` in `copy`, with an empty compile cache:
    the JSON it prints last, or {"error": line} if it fails."""
    with tempfile.TemporaryDirectory(prefix="ift-bench-inductor-") as cache:
        done = subprocess.run([sys.executable, "-m", "benchmarks.levers", *args], cwd=copy, capture_output=True,
                              text=True, env={**os.environ, "TQDM_DISABLE": "1", "TORCHINDUCTOR_CACHE_DIR": cache})
    if done.returncode != 0:
        last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["(no output)"]
        return {"error": last[0][:300]}
    return json.loads(done.stdout.splitlines()[-1])


def fresh_process_train_times(copy: Path, option: str, steps: int) -> dict[str, Any]:
    """train_step_times in a new process; {"error": line} if it fails."""
    return in_a_new_process(copy, ["train-times", str(copy), option, str(steps)])


def pythia_step_seconds(copy: Path, steps: int, keep_memory: bool, size: str = "pythia-70m") -> dict[str, float]:
    """Seconds per optimizer step (after a warm-up step) with train=`size` on `size`'s shape and
    alpaca-like lengths (within train.max_length, as the stage keeps), and this process's peak
    memory; with `keep_memory`, glibc keeps freed memory (ift.memory), as in the train stage."""
    from benchmarks.training import peak_rss_mib
    from ift.config import compose, validate
    from ift.modeling import load_tokenizer

    if keep_memory:
        keep_freed_memory()
    cfg = validate(compose([f"train={size}"], copy / "conf")).train
    tokenizer = load_tokenizer(copy / "models/base")
    examples = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * (steps + 1)
    dataset = synthetic_dataset(alpaca_like_lengths(examples, max_length=cfg.max_length), len(tokenizer))
    seconds = step_seconds(pythia_shaped_model(size).train(), tokenizer, dataset, cfg, steps=steps)
    return {"seconds_per_step": seconds, "peak_memory_mib": peak_rss_mib()}


def bench_memory_options(copy: Path, steps: int = 4) -> dict[str, dict[str, float]]:
    """pythia_step_seconds in new processes with glibc's default malloc (kept) and with glibc
    keeping freed memory (ift.memory), each twice (in order, then reversed): the means."""
    options = [("kept: glibc's default malloc", "default"),
               ("glibc keeps freed memory (train.keep_freed_memory)", "keep")]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in options}
    for name, malloc in options + options[::-1]:
        runs[name].append(in_a_new_process(copy, ["pythia-step", str(copy), str(steps), malloc]))
    return {name: mean_or_error(measured, ("seconds_per_step", "peak_memory_mib")) for name, measured in runs.items()}


def mean_or_error(measured: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """The mean of each key over a new-process option's runs, or the first of their errors."""
    errors = [m["error"] for m in measured if "error" in m]
    return {"error": errors[0]} if errors else {key: statistics.mean(m[key] for m in measured) for key in keys}


def bench_train_options(copy: Path, steps: int = 30) -> dict[str, dict[str, Any]]:
    """TRAIN_OPTIONS over the first `steps` steps, each run twice (in order, then reversed):
    first-step and later-step seconds, and the train stage's steps at that pace."""
    stage_steps = json.loads((copy / "reports/train/metrics.json").read_text())["step"]
    runs: dict[str, list[dict[str, Any]]] = {option: [] for option in TRAIN_OPTIONS}
    for option in [*TRAIN_OPTIONS, *reversed(TRAIN_OPTIONS)]:
        runs[option].append(fresh_process_train_times(copy, option, steps))
    results = {}
    for option, measured in runs.items():
        means = mean_or_error(measured, ("first_step_seconds", "later_step_seconds"))
        if "error" not in means:
            means |= {"stage_seconds_at_this_pace": means["first_step_seconds"]
                      + means["later_step_seconds"] * (stage_steps - 1), "stage_steps": stage_steps}
        results[TRAIN_OPTIONS[option][0]] = means
    return results


def bench_decode_options(copy: Path, max_new_tokens: int = 128, batch_size: int = 64) -> dict[str, dict[str, Any]]:
    """Decoding options on the long-answers workload (pythia-70m shape, lamini_docs-like prompts):
    seconds of a first and a second call (a compiled decode step compiles in the first), and
    whether the generated ids equal the kept option's."""
    from transformers import CompileConfig

    from ift.generation import generate_token_ids
    from ift.modeling import load_tokenizer

    tokenizer = load_tokenizer(copy / "models/base", padding_side="left")
    prompts = lamini_like_prompts(tokenizer, batch_size)
    compiled = CompileConfig(mode="default")
    compiled._compile_all_devices = True  # generate() compiles on GPUs only unless told (transformers' own flag)
    # name, generation config, threads (None: as set), bf16 autocast
    options = [("kept: dynamic KV cache, shared prefix", {}, None, False),
               ("static KV cache", {"cache_implementation": "static"}, None, False),
               ("static KV cache, decode step compiled (torch.compile, inductor)",
                {"cache_implementation": "static", "compile_config": compiled}, None, False),
               ("bf16 autocast (the matmuls at the bf16 peak)", {}, None, True),
               ("one thread", {}, 1, False)]
    results, kept_ids = {}, None
    for name, generation, threads, bf16 in options:
        model = pythia_shaped_model()
        for key, value in generation.items():
            setattr(model.generation_config, key, value)
        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)
        try:
            seconds, ids = [], None
            for _ in range(2):
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    ids = generate_token_ids(model, tokenizer, prompts, max_new_tokens, batch_size, desc=name)
                seconds.append(time.perf_counter() - start)
        finally:
            torch.set_num_threads(before)
        kept_ids = kept_ids or ids
        results[name] = {"first_call_seconds": seconds[0], "second_call_seconds": seconds[1],
                         "identical_ids": float(statistics.mean(a == b for a, b in zip(ids, kept_ids)))}
    return results


def bench_levers(copy: Path, params, pythia_cfg: TrainConfig) -> dict[str, Any]:
    """Each training and eval option we considered, against the one we kept, in the same run."""
    from trl import SFTTrainer

    from ift.generation import generate_answers
    from ift.io import read_jsonl
    from ift.modeling import load_model, load_tokenizer

    tokenizer = load_tokenizer(copy / "models/base")
    demo = demo_dataset(copy, tokenizer, params.train.max_length)
    # train/default packs each batch into a row padded to a multiple of 64 (packed_eager attention).
    padded_batches = {"padding_free": False, "pad_to_multiple_of": None}  # TRL would round padded batches too
    padded = {**padded_batches, "attn_implementation": "eager"}
    unrounded = {"pad_to_multiple_of": None}
    tiny = in_both_orders([("kept: packed rows padded to a multiple of 64, packed_eager attention, fused AdamW", {}),
                            ("packed rows as long as their examples", unrounded),
                            ("packed, sdpa attention (over the whole row)", {"attn_implementation": "sdpa"}),
                            ("padded random batches, eager attention", padded),
                            ("padded random batches, sdpa attention", {**padded, "attn_implementation": "sdpa"}),
                            ("padded length-grouped batches", {**padded, "train_sampling_strategy": "group_by_length"}),
                            ("plain AdamW", {"optim": "adamw_torch"})],
                           lambda change: tiny_step_seconds(copy, change, dataset=demo))
    tiny_fresh = in_both_orders([("kept: packed rows padded to a multiple of 64", {}),
                                  ("packed rows as long as their examples", unrounded),
                                  ("padded random batches, eager attention", padded)],
                                 lambda change: fresh_process_step_seconds(copy, change))
    # Where lengths vary widely, as in real instruction data, padding costs far more.
    tiny_wide = synthetic_dataset([lengths for lengths in alpaca_like_lengths(32 * 9, seed=1)
                                   if sum(lengths) <= params.train.max_length], len(tokenizer))
    tiny_alpaca = in_both_orders([("kept: packed rows padded to a multiple of 64", {}),
                                   ("padded random batches, eager attention", padded)],
                                  lambda change: tiny_step_seconds(copy, change, steps=8, dataset=tiny_wide))
    pythia_steps = 8  # alpaca-like batches vary a lot in length: fewer steps were too noisy
    alpaca = synthetic_dataset(alpaca_like_lengths(pythia_cfg.per_device_train_batch_size
                                                   * pythia_cfg.gradient_accumulation_steps * (pythia_steps + 1)),
                               len(tokenizer))
    tokens = sum(len(ids) for ids in alpaca["input_ids"]) / len(alpaca)
    examples_per_step = pythia_cfg.per_device_train_batch_size * pythia_cfg.gradient_accumulation_steps

    def pythia_tokens_per_second(change: dict, trainer_class) -> float:
        cfg = TrainConfig(**{**vars(pythia_cfg), **change})
        seconds = step_seconds(pythia_shaped_model().train(), tokenizer, alpaca, cfg, steps=pythia_steps,
                                trainer_class=trainer_class)
        return examples_per_step * tokens / seconds

    pythia = in_both_orders([("kept: bf16, LM head at labelled positions, its loss compiled, fused AdamW, packed "
                               "rows padded to a multiple of 64, packed_eager attention", {}, None),
                              ("fp32 instead of bf16 autocast", {"bf16": False}, None),
                              ("TRL's own tiled LM head (its loss: none of ours to compile)", {"compile_loss": False},
                               SFTTrainer),
                              ("the loss's vocabulary-wide work eager (train.compile_loss=false)",
                               {"compile_loss": False}, None),
                              ("plain AdamW", {"optim": "adamw_torch"}, None),
                              ("packed rows as long as their examples", unrounded, None),
                              ("padded random batches", padded_batches, None),
                              ("sdpa attention (over the whole packed row)", {"attn_implementation": "sdpa"}, None)],
                             pythia_tokens_per_second)

    model = load_model(copy / "models/tuned")
    eval_tokenizer = load_tokenizer(copy / "models/tuned", padding_side="left")
    prompts = [row["input"] for row in read_jsonl(copy / "data/hydrated/test.jsonl")]
    answers: dict[tuple[str, bool], list[str]] = {}

    def eval_seconds(sharing: str, autocast: bool) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            generate_answers(model, eval_tokenizer, prompts[:64], params.eval.max_new_tokens, 64, desc="warm-up",
                             sharing=sharing)
            start = time.perf_counter()
            answers[(sharing, autocast)] = generate_answers(
                model, eval_tokenizer, prompts, params.eval.max_new_tokens, params.eval.batch_size,
                desc="eval lever", sharing=sharing)
            return time.perf_counter() - start

    eval_options = [("kept: fp32, shared-prefix KV cache, a prefix per template branch", "branches", False),
                    ("one shared prefix per batch (its rows' common opening)", "opening", False),
                    ("no shared prefix (plain left-padded batches)", "none", False),
                    ("bf16 autocast", "branches", True)]
    seconds = in_both_orders(eval_options, eval_seconds)
    kept_name, *kept_key = eval_options[0]
    phase("levers: train options, each in a new process")
    train_options = bench_train_options(copy)
    phase("levers: memory allocation, pythia-70m shape, each in a new process")
    memory_options = bench_memory_options(copy)
    phase("levers: decoding options on long answers")
    decode_options = bench_decode_options(copy)
    return {
        "tiny_train_options_in_a_new_process": train_options,
        "pythia70m_train_memory_allocation_in_a_new_process": memory_options,
        "pythia70m_long_answers_decoding": decode_options,
        "tiny_train_seconds_per_step": tiny,
        "tiny_fresh_process_train_seconds_per_step": tiny_fresh,
        "tiny_alpaca_like_train_seconds_per_step": tiny_alpaca,
        "pythia70m_train_tokens_per_second": pythia,
        "tiny_eval": {name: {"speed_vs_kept": seconds[kept_name] / seconds[name],
                             "identical_answers": statistics.mean(
                                 a == b for a, b in zip(answers[tuple(kept_key)], answers[tuple(key)]))}
                      for name, *key in eval_options},
    }


def levers_markdown(levers: dict[str, Any]) -> list[str]:
    lines = ["", "## Levers, measured side by side", "",
             "Each option ran twice, in the order listed and then in reverse; the numbers are the means.", "",
             "Tiny model, demo data, seconds per optimizer step:", ""]
    lines += [f"- {name}: {seconds:.3f}" for name, seconds in levers["tiny_train_seconds_per_step"].items()]
    lines += ["", "Tiny model, demo data, 100 steps in a new process for each option (as a train stage "
              "runs: matmul shapes are new to it), seconds per optimizer step:", ""]
    lines += [f"- {name}: {seconds:.3f}"
              for name, seconds in levers["tiny_fresh_process_train_seconds_per_step"].items()]
    lines += ["", "Tiny model, alpaca-like lengths (up to train.max_length), seconds per optimizer step:", ""]
    lines += [f"- {name}: {seconds:.3f}"
              for name, seconds in levers["tiny_alpaca_like_train_seconds_per_step"].items()]
    lines += ["", "pythia-70m shape, alpaca-like lengths, train tokens/s:", ""]
    lines += [f"- {name}: {tps:.0f}" for name, tps in levers["pythia70m_train_tokens_per_second"].items()]
    lines += ["", "Tiny model eval, speed relative to the kept option (higher is faster) and the share of "
              "greedy answers identical to its answers:", ""]
    lines += [f"- {name}: {e['speed_vs_kept']:.2f}x, identical {e['identical_answers']:.3f}"
              for name, e in levers["tiny_eval"].items()]
    if "tiny_train_options_in_a_new_process" in levers:  # (older reports lack them)
        lines += ["", "Tiny model, demo data, each option in a new process with an empty compile cache (as a "
                  "train stage's first run), twice: seconds of the first step, of each later step, and of the "
                  "train stage's steps at that pace:", ""]
        for name, t in levers["tiny_train_options_in_a_new_process"].items():
            lines.append(f"- {name}: failed: {t['error']}" if "error" in t else
                         f"- {name}: first {t['first_step_seconds']:.2f}, later {t['later_step_seconds']:.3f}, "
                         f"{t['stage_steps']} steps {t['stage_seconds_at_this_pace']:.1f}")
        if "pythia70m_train_memory_allocation_in_a_new_process" in levers:
            lines += ["", "pythia-70m shape, alpaca-like lengths, train=pythia-70m, each in a new process, twice: "
                      "seconds per optimizer step and the process's peak memory:", ""]
            lines += [f"- {name}: failed: {m['error']}" if "error" in m else
                      f"- {name}: {m['seconds_per_step']:.2f} s, {m['peak_memory_mib']:.0f} MiB"
                      for name, m in levers["pythia70m_train_memory_allocation_in_a_new_process"].items()]
        lines += ["", "pythia-70m shape, long answers (64 lamini_docs-like prompts, max_new_tokens 128), "
                  "seconds of a first and a second call, and the share of rows whose ids equal the kept option's:",
                  ""]
        lines += [f"- {name}: first {d['first_call_seconds']:.1f}, second {d['second_call_seconds']:.1f}, "
                  f"identical {d['identical_ids']:.3f}"
                  for name, d in levers["pythia70m_long_answers_decoding"].items()]
    return lines


if __name__ == "__main__":
    if sys.argv[1] == "pythia-step":
        copy, steps, malloc, *size = sys.argv[2:]
        print(json.dumps(pythia_step_seconds(Path(copy), int(steps), malloc == "keep", *size)))
    else:
        print(json.dumps(train_step_times(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))))
