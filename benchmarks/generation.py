"""The eval stage's batched generation against the tutorial's loop and against batched
`generate()` as a user writes it, on the same prompts."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from benchmarks.clocks import in_both_orders, matmul_peak
from benchmarks.flops import DECODE_HOW_COUNTED, decode_flops
from benchmarks.peers import batched_generate
from benchmarks.tutorial import tutorial_inference


def first_tokens_agree(ours: list[int], theirs: list[int]) -> bool:
    """Greedy decoding: where both generated, the first tokens must be the same."""
    k = min(len(ours), len(theirs))
    return ours[:k] == theirs[:k]


def prefill_tokens(encoded: list[list[int]], batch_size: int) -> dict[str, int]:
    """Token positions the prompts' prefill computes: ours (length-sorted batches, each
    prefix of its prefix_plan once) and batched generate()'s (batches in the given order,
    each padded to its longest)."""
    from ift.generation import length_sorted_batches, prefill_positions, prefix_plan

    ours = 0
    for batch in length_sorted_batches([len(ids) for ids in encoded], batch_size):
        rows = [encoded[i] for i in batch]
        ours += prefill_positions(rows, prefix_plan(rows))
    theirs = sum(len(batch) * max(map(len, batch))
                 for batch in (encoded[i:i + batch_size] for i in range(0, len(encoded), batch_size)))
    return {"ours": ours, "batched_generate": theirs}


def decode_steps(encoded: list[list[int]], generated: list[list[int]], batch_size: int,
                 max_new_tokens: int) -> dict[str, int]:
    """Decode steps our batches ran (generate() stops a batch once every row has emitted EOS),
    against max_new_tokens for every batch."""
    from ift.generation import length_sorted_batches

    batches = length_sorted_batches([len(ids) for ids in encoded], batch_size)
    return {"run": sum(max(len(generated[i]) for i in batch) for batch in batches),
            "without_stopping_at_eos": len(batches) * max_new_tokens}


def time_tutorial_loop(model, tokenizer, prompts: list[str]) -> tuple[float, list[list[int]]]:
    """Seconds of the tutorial's loop over `prompts`, and the token ids it generated (a batch of
    one ends at EOS: no padding after it)."""
    tokenizer.padding_side = "right"  # the tutorial never set it; it does not pad anyway
    start = time.perf_counter()
    with torch.inference_mode():
        answers = [tutorial_inference(p, model, tokenizer, return_token_ids=True) for p in prompts]
    seconds = time.perf_counter() - start
    tokenizer.padding_side = "left"
    return seconds, [ids for _, ids in answers]


def bench_eval(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int,
               tutorial_prompts: int | None = None) -> dict[str, Any]:
    """Examples/s of our batched generation, of batched `generate()` and of the tutorial's loop,
    on the same prompts (the loop on the first `tutorial_prompts` only, if given: it is slow,
    and its rate is what counts).

    Answers are compared by generated token ids: the pythia-70m-shaped model generates from
    its 50k vocabulary, which the demo tokenizer (used for its prompts) cannot all decode.
    """
    from ift.generation import decode_answers, generate_token_ids

    generate_token_ids(model, tokenizer, prompts[:batch_size], max_new_tokens, batch_size, desc="warm-up")
    generated: dict[str, list[list[int]]] = {}

    def ours() -> list[list[int]]:
        ids = generate_token_ids(model, tokenizer, prompts, max_new_tokens, batch_size, desc="ours")
        decode_answers(tokenizer, ids)
        return ids

    def seconds_of(name: str, generate) -> float:
        start = time.perf_counter()
        generated[name] = generate()
        return time.perf_counter() - start

    def users() -> list[list[int]]:
        return batched_generate(model, tokenizer, prompts, max_new_tokens, batch_size)

    # Each side twice, in both orders: single readings drift on a shared machine.
    seconds = in_both_orders([("ours", "ours", ours), ("batched generate", "batched generate", users)], seconds_of)
    ours_ids, users_ids = generated["ours"], generated["batched generate"]
    ours_seconds, users_seconds = seconds["ours"], seconds["batched generate"]

    tutorial_seconds, theirs_ids = time_tutorial_loop(model, tokenizer, prompts[:tutorial_prompts])
    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    # Whole answers can only be the same where both stopped at EOS before their (different) limits.
    both_stopped = [(a, b) for a, b in zip(ours_ids, theirs_ids)
                    if tokenizer.eos_token_id in a and tokenizer.eos_token_id in b]
    return {
        "examples": len(prompts),
        "ours_examples_per_second": len(prompts) / ours_seconds,
        "tutorial_examples": len(theirs_ids),
        "tutorial_examples_per_second": len(theirs_ids) / tutorial_seconds,
        "speedup": (len(prompts) / ours_seconds) / (len(theirs_ids) / tutorial_seconds),
        "batched_generate_examples_per_second": len(prompts) / users_seconds,
        "speedup_vs_batched_generate": users_seconds / ours_seconds,
        "identical_to_batched_generate": float(statistics.mean(a == b for a, b in zip(ours_ids, users_ids))),
        "first_tokens_agree": float(statistics.mean(first_tokens_agree(a, b) for a, b in zip(ours_ids, theirs_ids))),
        "both_stopped_at_eos": len(both_stopped),
        "identical_answers": float(statistics.mean(a == b for a, b in both_stopped)) if both_stopped else None,
        "ours_mean_generated_tokens": statistics.mean(map(len, ours_ids)),
        "batched_generate_mean_generated_tokens": statistics.mean(map(len, users_ids)),
        "tutorial_mean_generated_tokens": statistics.mean(map(len, theirs_ids)),
        "prefill_tokens": prefill_tokens(encoded, batch_size),
        "decode_steps": decode_steps(encoded, ours_ids, batch_size, max_new_tokens),
        "ours_settings": f"batch {batch_size}, prompts sorted by length, shared prefixes computed once, "
                         f"padding + attention mask, max_new_tokens={max_new_tokens}",
        "tutorial_settings": "one at a time, no attention mask, max_length=100, prompt cut by characters",
        "batched_generate_settings": f"batch {batch_size} in the given order, left padding + attention mask, "
                                     f"max_new_tokens={max_new_tokens}, greedy",
    }


def bench_long_answers(model, tokenizer, prompts: list[str], tutorial_prompts: int, max_new_tokens: int = 128,
                       batch_size: int = 64) -> dict[str, Any]:
    """Answers shaped like real instruction data (lamini_docs: ~100 tokens): our batched generation
    with max_new_tokens 128 against the tutorial's loop, examples/s (the loop on the first
    `tutorial_prompts` prompts only: it is slow, and its rate is what counts).

    Also the most any implementation could reach here: our answers' decode FLOPs (prefill free)
    at the matrix-multiply peak in the model's dtype, measured in the same run.
    """
    from ift.generation import generate_token_ids

    generate_token_ids(model, tokenizer, prompts[:batch_size], 4, batch_size, desc="warm-up")
    start = time.perf_counter()
    ours_ids = generate_token_ids(model, tokenizer, prompts, max_new_tokens, batch_size, desc="ours")
    ours_seconds = time.perf_counter() - start
    tutorial_seconds, theirs_ids = time_tutorial_loop(model, tokenizer, prompts[:tutorial_prompts])
    prompt_tokens = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    flops = decode_flops(model, prompt_tokens, list(map(len, ours_ids)))
    peak = matmul_peak(model.dtype)
    tutorial_rate = tutorial_prompts / tutorial_seconds
    return {"examples": len(prompts), "tutorial_examples": tutorial_prompts,
            "mean_prompt_tokens": statistics.mean(prompt_tokens),
            "ours_examples_per_second": len(prompts) / ours_seconds,
            "tutorial_examples_per_second": tutorial_rate,
            "speedup": (len(prompts) / ours_seconds) / tutorial_rate,
            "ours_mean_generated_tokens": statistics.mean(map(len, ours_ids)),
            "tutorial_mean_generated_tokens": statistics.mean(map(len, theirs_ids)),
            "decode_flops": flops, "decode_flops_counted": DECODE_HOW_COUNTED,
            "matmul_peak_flops_per_second": peak, "matmul_peak_dtype": str(model.dtype).removeprefix("torch."),
            "ours_fraction_of_peak": flops / ours_seconds / peak,
            "speedup_ceiling_at_peak": (len(prompts) / (flops / peak)) / tutorial_rate,
            "ours_settings": f"batch {batch_size}, max_new_tokens={max_new_tokens}",
            "tutorial_settings": "one at a time, max_length=100 (prompt included), as the tutorial wrote it"}
