"""`ift bench --levers`: each training and eval option we considered, against the one we kept."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.clocks import in_both_orders
from benchmarks.training import fresh_process_step_seconds, step_seconds, tiny_step_seconds
from benchmarks.workloads import alpaca_like_lengths, demo_dataset, pythia_70m_shaped_model, synthetic_dataset
from ift.config import TrainConfig


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
        seconds = step_seconds(pythia_70m_shaped_model().train(), tokenizer, alpaca, cfg, steps=pythia_steps,
                                trainer_class=trainer_class)
        return examples_per_step * tokens / seconds

    pythia = in_both_orders([("kept: bf16, LM head at labelled positions, fused AdamW, packed rows padded to a "
                               "multiple of 64", {}, None),
                              ("fp32 instead of bf16 autocast", {"bf16": False}, None),
                              ("TRL's own tiled LM head", {}, SFTTrainer),
                              ("plain AdamW", {"optim": "adamw_torch"}, None),
                              ("packed rows as long as their examples", unrounded, None),
                              ("padded random batches", padded_batches, None),
                              ("packed_eager attention", {"attn_implementation": "packed_eager"}, None)],
                             pythia_tokens_per_second)

    model = load_model(copy / "models/tuned")
    eval_tokenizer = load_tokenizer(copy / "models/tuned", padding_side="left")
    prompts = [row["input"] for row in read_jsonl(copy / "data/hydrated/test.jsonl")]
    answers: dict[tuple[bool, bool], list[str]] = {}

    def eval_seconds(share_prefix: bool, autocast: bool) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            generate_answers(model, eval_tokenizer, prompts[:64], params.eval.max_new_tokens, 64, desc="warm-up",
                             share_prefix=share_prefix)
            start = time.perf_counter()
            answers[(share_prefix, autocast)] = generate_answers(
                model, eval_tokenizer, prompts, params.eval.max_new_tokens, params.eval.batch_size,
                desc="eval lever", share_prefix=share_prefix)
            return time.perf_counter() - start

    eval_options = [("kept: fp32, shared-prefix KV cache", True, False),
                    ("no shared prefix (plain left-padded batches)", False, False),
                    ("bf16 autocast", True, True)]
    seconds = in_both_orders(eval_options, eval_seconds)
    kept_name, *kept_key = eval_options[0]
    return {
        "tiny_train_seconds_per_step": tiny,
        "tiny_fresh_process_train_seconds_per_step": tiny_fresh,
        "tiny_alpaca_like_train_seconds_per_step": tiny_alpaca,
        "pythia70m_train_tokens_per_second": pythia,
        "tiny_eval": {name: {"speed_vs_kept": seconds[kept_name] / seconds[name],
                             "identical_answers": statistics.mean(
                                 a == b for a, b in zip(answers[tuple(kept_key)], answers[(share, autocast)]))}
                      for name, share, autocast in eval_options},
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
    return lines
