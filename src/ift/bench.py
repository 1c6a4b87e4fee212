"""`ift bench`: the pipeline's speed against the classic tutorial's way and the machine's limit.

Everything is measured side by side in one run on this machine (ratios are what count on a
shared, noisy machine) and written to reports/bench.json and reports/bench.md:

1. pipeline: the committed default pipeline rebuilt from scratch in a temporary copy (per
   stage wall time and peak memory), then a `dvc repro` with nothing to do;
2. eval: the eval stage's batched generation against a faithful re-creation of the
   tutorial's loop, on the tuned tiny model from (1) and on a model with pythia-70m's exact
   shape (random weights: the Hub is unreachable here);
3. train: tokens/s and model FLOP utilisation of our train step on the pythia-70m shape,
   against the matrix-multiply peak measured in the same run; padding waste;
4. whole process: the tutorial's loop as a script of its own against
   `dvc repro -f -s tuned_eval`, on the same tuned model and test set (start-up included).
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ift.config import TrainConfig, load_params
from ift.errors import UserError

# EleutherAI/pythia-70m's shape (config.json of the Hub repo), for weights we cannot download here.
PYTHIA_70M_SHAPE = dict(vocab_size=50304, hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                        intermediate_size=2048, max_position_embeddings=2048, rotary_pct=0.25)
STAGES = ("fetch", "hydrate", "baseline_eval", "train", "tuned_eval")


# --- the tutorial's way ----------------------------------------------------------------------


def tutorial_inference(text: str, model, tokenizer, max_input_tokens: int = 1000, max_output_tokens: int = 100,
                       return_token_ids: bool = False):
    """The classic tutorial's `inference`, faithfully: one example, no attention mask,
    `max_length` (which counts the prompt), and the prompt cut off by characters.

    With `return_token_ids`, also the generated token ids (what the answers are compared by).
    """
    input_ids = tokenizer.encode(text, return_tensors="pt", truncation=True, max_length=max_input_tokens)
    device = model.device
    generated_tokens_with_prompt = model.generate(input_ids=input_ids.to(device), max_length=max_output_tokens)
    generated_text_with_prompt = tokenizer.batch_decode(generated_tokens_with_prompt, skip_special_tokens=True)
    generated_text_answer = generated_text_with_prompt[0][len(text):]
    if return_token_ids:
        return generated_text_answer, generated_tokens_with_prompt[0, input_ids.shape[1]:].tolist()
    return generated_text_answer


# --- measurements ------------------------------------------------------------------------------


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


def _first_tokens_agree(ours: list[int], theirs: list[int]) -> bool:
    """Greedy decoding: where both generated, the first tokens must be the same."""
    k = min(len(ours), len(theirs))
    return ours[:k] == theirs[:k]


def bench_eval(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int) -> dict[str, Any]:
    """Examples/s of our batched generation and of the tutorial's loop, on the same prompts.

    Answers are compared by generated token ids: the pythia-70m-shaped model generates from
    its 50k vocabulary, which the demo tokenizer (used for its prompts) cannot all decode.
    """
    from ift.generation import decode_answers, generate_token_ids

    generate_token_ids(model, tokenizer, prompts[:batch_size], max_new_tokens, batch_size, desc="warm-up")
    start = time.perf_counter()
    ours_ids = generate_token_ids(model, tokenizer, prompts, max_new_tokens, batch_size, desc="ours")
    decode_answers(tokenizer, ours_ids)
    ours_seconds = time.perf_counter() - start

    tokenizer.padding_side = "right"  # the tutorial never set it; it does not pad anyway
    start = time.perf_counter()
    with torch.inference_mode():
        theirs = [tutorial_inference(p, model, tokenizer, return_token_ids=True) for p in prompts]
    tutorial_seconds = time.perf_counter() - start
    tokenizer.padding_side = "left"
    theirs_ids = [ids for _, ids in theirs]  # a batch of one ends at EOS: no padding after it
    # Whole answers can only be the same where both stopped at EOS before their (different) limits.
    both_stopped = [(a, b) for a, b in zip(ours_ids, theirs_ids)
                    if tokenizer.eos_token_id in a and tokenizer.eos_token_id in b]
    return {
        "examples": len(prompts),
        "ours_examples_per_second": len(prompts) / ours_seconds,
        "tutorial_examples_per_second": len(prompts) / tutorial_seconds,
        "speedup": tutorial_seconds / ours_seconds,
        "first_tokens_agree": float(statistics.mean(
            _first_tokens_agree(a, b) for a, b in zip(ours_ids, theirs_ids))),
        "both_stopped_at_eos": len(both_stopped),
        "identical_answers": float(statistics.mean(a == b for a, b in both_stopped)) if both_stopped else None,
        "ours_mean_generated_tokens": statistics.mean(map(len, ours_ids)),
        "tutorial_mean_generated_tokens": statistics.mean(map(len, theirs_ids)),
        "ours_settings": f"batch {batch_size}, prompts sorted by length, shared prefix computed once, "
                         f"padding + attention mask, max_new_tokens={max_new_tokens}",
        "tutorial_settings": "one at a time, no attention mask, max_length=100, prompt cut by characters",
    }


def pythia_70m_shaped_model(seed: int = 0):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(**PYTHIA_70M_SHAPE, bos_token_id=0, eos_token_id=0, pad_token_id=1))
    return model.eval()


def non_embedding_parameters(model) -> int:
    """Parameters outside the input embedding and the output (LM head) matrix."""
    skip = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def alpaca_like_lengths(count: int, seed: int = 0) -> list[tuple[int, int]]:
    """(prompt, answer) token lengths shaped like Alpaca's in a Pythia tokenizer.

    A lognormal fit by eye (Alpaca itself is not reachable here): prompts ~40 tokens of
    template plus a median ~25 of instruction and input; answers with median ~45 and a long
    tail, capped at 1,000.
    """
    rng = random.Random(seed)
    return [(40 + min(int(rng.lognormvariate(math.log(25), 0.6)), 400),
             max(1, min(int(rng.lognormvariate(math.log(45), 0.9)), 1000))) for _ in range(count)]


def synthetic_dataset(lengths: list[tuple[int, int]], vocab: int, seed: int = 0):
    """Tokenized prompt/answer examples with the given lengths (random ids; EOS ends the answer)."""
    from datasets import Dataset

    rng = random.Random(seed)
    rows = []
    for prompt, answer in lengths:
        ids = [rng.randrange(2, vocab) for _ in range(prompt + answer - 1)] + [0]
        rows.append({"input_ids": ids, "completion_mask": [0] * prompt + [1] * answer})
    return Dataset.from_list(rows)


class _RealTokenCounter:
    """A collator wrapper counting the tokens of the examples it is given: whatever else a
    batch holds (padding, pad examples in a packed row) is what the collator added."""

    def __init__(self, collate):
        self.collate, self.counts = collate, []

    def __call__(self, examples: list[dict]) -> dict:
        self.counts.append(sum(len(example["input_ids"]) for example in examples))
        return self.collate(examples)


def padding_waste(trainer) -> float:
    """Padding tokens / all tokens in one epoch of the trainer's own dataloader and collator."""
    counter = _RealTokenCounter(trainer.data_collator)
    trainer.data_collator = counter
    try:
        total = sum(batch["input_ids"].numel() for batch in trainer.get_train_dataloader())
    finally:
        trainer.data_collator = counter.collate
    return (total - sum(counter.counts)) / total


def _timed_config(cfg: TrainConfig, steps: int) -> TrainConfig:
    """`cfg` for a timing run: `steps` optimizer steps, no checkpoints, no logging."""
    return TrainConfig(**{**vars(cfg), "max_steps": steps, "save_steps": 0, "logging_steps": 10**6})


class _StepClock:
    """A TrainerCallback timing optimizer steps after a warm-up."""

    def __init__(self, warmup: int):
        from transformers import TrainerCallback

        clock = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == warmup:
                    clock.start = time.perf_counter()
                clock.end = time.perf_counter()

        self.callback, self.start, self.end = Callback(), None, None


def bench_train(tokenizer, cfg: TrainConfig, steps: int = 8, warmup: int = 2) -> dict[str, Any]:
    """Our train step on the pythia-70m shape: non-padding tokens/s, model FLOP/s and MFU."""
    from ift.modeling import bf16_supported, pick_device
    from ift.trainer import make_trainer

    model = pythia_70m_shaped_model().train()
    examples_per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    dataset = synthetic_dataset(alpaca_like_lengths(examples_per_step * (steps + 1)), vocab=len(tokenizer))
    cfg = _timed_config(cfg, steps)
    clock = _StepClock(warmup)
    with tempfile.TemporaryDirectory(prefix="ift-bench-train-") as work_dir:
        trainer = make_trainer(model, tokenizer, dataset, cfg, 0, Path(work_dir), [clock.callback])
        counter = trainer.data_collator = _RealTokenCounter(trainer.data_collator)
        trainer.train()
    micro = cfg.gradient_accumulation_steps
    tokens = sum(counter.counts[warmup * micro: steps * micro])
    seconds = clock.end - clock.start
    use_bf16 = bf16_supported(pick_device()) if cfg.bf16 is None else cfg.bf16
    peak = matmul_peak(torch.bfloat16 if use_bf16 else torch.float32)
    tokens_per_second = tokens / seconds
    flops = 6 * non_embedding_parameters(model) * tokens_per_second
    return {"tokens_per_second": tokens_per_second, "model_flops_per_second": flops,
            "matmul_peak_flops_per_second": peak, "precision": "bf16 autocast" if use_bf16 else "fp32",
            "mfu": flops / peak, "non_embedding_parameters": non_embedding_parameters(model),
            "examples_per_step": examples_per_step, "measured_steps": steps - warmup}


# --- levers: the options measured side by side -------------------------------------------------


def _step_seconds(model, tokenizer, dataset, cfg: TrainConfig, steps: int, trainer_class=None) -> float:
    """Mean seconds per optimizer step after one warm-up step."""
    from ift.trainer import make_trainer

    clock = _StepClock(1)
    with tempfile.TemporaryDirectory(prefix="ift-bench-lever-") as work_dir:
        trainer = make_trainer(model, tokenizer, dataset, _timed_config(cfg, steps), 0, Path(work_dir),
                               [clock.callback])
        if trainer_class is not None:
            # Measure a parent class's compute_loss (TRL's own) on the very same trainer setup.
            trainer.__class__ = trainer_class
        trainer.train()
    return (clock.end - clock.start) / (steps - 1)


def tiny_step_seconds(copy: Path, change: dict, steps: int = 30, dataset=None) -> float:
    """Seconds per step of the tiny base model with train/default + `change`, on `dataset`
    (tokenized with the base model's tokenizer; None: the demo's training split)."""
    from ift.modeling import load_model, load_tokenizer

    params = load_params(copy / "params.yaml")
    tokenizer = load_tokenizer(copy / "models/base")
    cfg = TrainConfig(**{**vars(params.train), **change})
    if dataset is None:
        dataset = _demo_dataset(copy, tokenizer, params.train.max_length)
    return _step_seconds(load_model(copy / "models/base"), tokenizer, dataset, cfg, steps)


def fresh_process_step_seconds(copy: Path, change: dict, steps: int = 100) -> float:
    """tiny_step_seconds on the demo data in a new Python process, as a train stage runs.

    Each matmul shape costs set-up time the first time a process meets it (oneDNN, for bf16
    on CPU), and unrounded packed rows bring a new shape with nearly every batch; measured in
    one long-running process, where shapes repeat, they looked far cheaper than they are in a
    stage.
    """
    code = ("import json, sys; from pathlib import Path; from ift.bench import tiny_step_seconds; "
            "print(tiny_step_seconds(Path(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])))")
    out = subprocess.run([sys.executable, "-c", code, str(copy), json.dumps(change), str(steps)],
                         check=True, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"}).stdout
    return float(out.split()[-1])


def _in_both_orders(options: list[tuple], measure) -> dict[str, float]:
    """measure(*option[1:]) for each option, run in list order and then in reverse, averaged.

    Within one run, the position in the sequence alone moved the pythia-70m-shape step speed
    a lot here (in earlier one-pass runs, whichever option came fourth was the fastest), so
    a single pass would rank options by their position.
    """
    values: dict[str, list[float]] = {option[0]: [] for option in options}
    for name, *args in options + options[::-1]:
        values[name].append(measure(*args))
    return {name: statistics.mean(measured) for name, measured in values.items()}


def bench_levers(copy: Path, params, pythia_cfg: TrainConfig) -> dict[str, Any]:
    """Each training and eval option we considered, against the one we kept, in the same run."""
    from trl import SFTTrainer

    from ift.generation import generate_answers
    from ift.io import read_jsonl
    from ift.modeling import load_model, load_tokenizer

    tokenizer = load_tokenizer(copy / "models/base")
    demo = _demo_dataset(copy, tokenizer, params.train.max_length)
    # train/default packs each batch into a row padded to a multiple of 64 (packed_eager attention).
    padded_batches = {"padding_free": False, "pad_to_multiple_of": None}  # TRL would round padded batches too
    padded = {**padded_batches, "attn_implementation": "eager"}
    unrounded = {"pad_to_multiple_of": None}
    tiny = _in_both_orders([("kept: packed rows padded to a multiple of 64, packed_eager attention, fused AdamW", {}),
                            ("packed rows as long as their examples", unrounded),
                            ("packed, sdpa attention (over the whole row)", {"attn_implementation": "sdpa"}),
                            ("padded random batches, eager attention", padded),
                            ("padded random batches, sdpa attention", {**padded, "attn_implementation": "sdpa"}),
                            ("padded length-grouped batches", {**padded, "train_sampling_strategy": "group_by_length"}),
                            ("plain AdamW", {"optim": "adamw_torch"})],
                           lambda change: tiny_step_seconds(copy, change, dataset=demo))
    tiny_fresh = _in_both_orders([("kept: packed rows padded to a multiple of 64", {}),
                                  ("packed rows as long as their examples", unrounded),
                                  ("padded random batches, eager attention", padded)],
                                 lambda change: fresh_process_step_seconds(copy, change))
    # Where lengths vary widely, as in real instruction data, padding costs far more.
    tiny_wide = synthetic_dataset([lengths for lengths in alpaca_like_lengths(32 * 9, seed=1)
                                   if sum(lengths) <= params.train.max_length], len(tokenizer))
    tiny_alpaca = _in_both_orders([("kept: packed rows padded to a multiple of 64", {}),
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
        seconds = _step_seconds(pythia_70m_shaped_model().train(), tokenizer, alpaca, cfg, steps=pythia_steps,
                                trainer_class=trainer_class)
        return examples_per_step * tokens / seconds

    pythia = _in_both_orders([("kept: bf16, LM head at labelled positions, fused AdamW, packed rows padded to a "
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
    seconds = _in_both_orders(eval_options, eval_seconds)
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


# --- the pipeline ------------------------------------------------------------------------------

_MEASURE = ("import resource, subprocess, sys, time; start = time.perf_counter(); "
            "code = subprocess.run(sys.argv[1:]).returncode; "
            "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; "
            "print(round(time.perf_counter() - start, 3), rss, code)")


def _measured(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB of the largest process) of a command."""
    result = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    seconds, max_rss_kib, code = result.stdout.strip().splitlines()[-1].split()
    if int(code) != 0:
        raise UserError(f"`{' '.join(cmd)}` failed in {cwd}: {result.stderr.strip()[-500:]}")
    return float(seconds), int(max_rss_kib) / 1024


def bench_pipeline(copy: Path) -> dict[str, Any]:
    """Per-stage wall time and peak memory of the default pipeline from scratch; a no-op repro."""
    from ift.verify import subprocess_env

    env = subprocess_env(copy)
    stages = {}
    for stage in STAGES:
        seconds, peak = _measured(["dvc", "repro", "--single-item", stage], copy, env)
        stages[stage] = {"seconds": seconds, "peak_rss_mib": round(peak, 1)}
        print(f"  {stage}: {seconds:.1f} s, peak {peak:.0f} MiB", file=sys.stderr, flush=True)
    noop = [_measured(["dvc", "repro"], copy, env)[0] for _ in range(3)]
    return {"pipeline_seconds": sum(s["seconds"] for s in stages.values()),
            "noop_repro_seconds": statistics.median(noop), "stages": stages}


# The tutorial's evaluation as a process of its own: load the tuned model, loop over the test set.
_TUTORIAL_PROCESS = (
    "import json\n"
    "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
    "from ift.bench import tutorial_inference\n"
    "tokenizer = AutoTokenizer.from_pretrained('models/tuned')\n"
    "model = AutoModelForCausalLM.from_pretrained('models/tuned')\n"
    "prompts = [json.loads(line)['input'] for line in open('data/hydrated/test.jsonl')]\n"
    "answers = [tutorial_inference(prompt, model, tokenizer) for prompt in prompts]\n"
)


def bench_whole_process(copy: Path, repeats: int = 3) -> dict[str, Any]:
    """Wall time of the tutorial's loop as a process vs `dvc repro -f -s tuned_eval` (medians, alternated)."""
    from ift.verify import subprocess_env

    env = subprocess_env(copy)
    tutorial, ours = [], []
    for _ in range(repeats):
        tutorial.append(_measured([sys.executable, "-c", _TUTORIAL_PROCESS], copy, env)[0])
        ours.append(_measured(["dvc", "repro", "--force", "--single-item", "tuned_eval"], copy, env)[0])
    return {"tutorial_process_seconds": statistics.median(tutorial),
            "tuned_eval_repro_seconds": statistics.median(ours),
            "speedup": statistics.median(tutorial) / statistics.median(ours)}


# --- the report --------------------------------------------------------------------------------

# The keys; a dotted key names a value inside one (e.g. the tiny model's speed-up).
TARGETS = {"eval_speedup_vs_tutorial_loop.tiny": (">=", 20), "eval_speedup_vs_tutorial_loop.pythia70m": (">=", 8),
           "train_mfu": (">=", 0.35), "padding_waste.demo": ("<=", 0.05), "padding_waste.alpaca_like": ("<=", 0.05),
           "noop_repro_seconds": ("<=", 2), "pipeline_seconds": ("<=", 180),
           "whole_process_speedup_vs_tutorial": (">=", 10)}


def target_value(results: dict[str, Any], key: str) -> float:
    """The value of a TARGETS key in bench.json's results."""
    value: Any = results
    for part in key.split("."):
        value = value[part]
    return value


def target_met(results: dict[str, Any], key: str) -> bool:
    op, target = TARGETS[key]
    value = target_value(results, key)
    return value >= target if op == ">=" else value <= target


def markdown(results: dict[str, Any]) -> str:
    measured = f" of commit {results['commit']}" if "commit" in results else ""  # (older reports lack it)
    lines = ["# Benchmark", "", f"`ift bench`{measured} on {results['machine']}, {results['date']}. "
             "All numbers were measured side by side in this one run; ratios are what count.", "",
             "| key | value | target | met |", "| --- | ---: | ---: | :---: |"]
    for key, (op, target) in TARGETS.items():
        met = "yes" if target_met(results, key) else "**no**"
        lines.append(f"| `{key}` | {target_value(results, key):.3g} | {op} {target} | {met} |")
    lines += ["", "## Evaluation: batched generation vs the tutorial's loop", "",
              "| model | examples | ours (ex/s) | tutorial (ex/s) | speedup | first tokens agree | both stopped at EOS "
              "| identical where both stopped |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in ("tiny", "pythia70m"):
        e = results["eval"][name]
        lines.append(f"| {name} | {e['examples']} | {e['ours_examples_per_second']:.1f} | "
                     f"{e['tutorial_examples_per_second']:.2f} | {e['speedup']:.1f} | {e['first_tokens_agree']:.3f} | "
                     f"{e['both_stopped_at_eos']} | "
                     + ("n/a" if e["identical_answers"] is None else f"{e['identical_answers']:.3f}") + " |")
    t = results["train"]
    lines += ["", "Ours: " + results["eval"]["tiny"]["ours_settings"] + "; tutorial: "
              + results["eval"]["tiny"]["tutorial_settings"] + ". Answers are compared by generated token ids: "
              "the first tokens must agree where both generated, and whole answers can only be identical where both "
              "stopped at EOS before their limits. The pythia-70m-shaped model has random weights (it never emits "
              "EOS), so both generate up to their limits there; its prompts use the demo tokenizer.", "",
              "## Training step (pythia-70m shape)", "",
              f"- {t['tokens_per_second']:.0f} non-padding tokens/s, {t['model_flops_per_second'] / 1e12:.3f} TFLOP/s "
              f"(6 x {t['non_embedding_parameters'] / 1e6:.1f}M non-embedding parameters x tokens/s), "
              f"{t['precision']}",
              f"- matrix-multiply peak measured in the same run: {t['matmul_peak_flops_per_second'] / 1e12:.2f} TFLOP/s"
              f" -> MFU {t['mfu']:.3f}",
              f"- {t['examples_per_step']} examples per optimizer step, alpaca-like lengths, "
              f"{t['measured_steps']} steps timed after warm-up",
              "", "## Pipeline (default, from scratch)", "", "| stage | seconds | peak memory (MiB) |",
              "| --- | ---: | ---: |"]
    for stage, s in results["pipeline"]["stages"].items():
        lines.append(f"| {stage} | {s['seconds']:.1f} | {s['peak_rss_mib']:.0f} |")
    lines += ["", f"Each stage ran as its own `dvc repro --single-item` (dvc's start-up included); a `dvc repro` "
              f"with nothing to do took {results['noop_repro_seconds']:.2f} s (median of 3)."]
    w = results["whole_process"]
    lines += ["", "## Whole process: the tutorial's loop vs the tuned_eval stage", "",
              f"The tutorial's loop as a script of its own (load the tuned model, answer the test set one "
              f"example at a time) took {w['tutorial_process_seconds']:.1f} s; `dvc repro -f -s tuned_eval` "
              f"(dvc, imports, model load, generation, answer loss, metrics, report) took "
              f"{w['tuned_eval_repro_seconds']:.1f} s: {w['speedup']:.2f}x (medians of 3, alternated). "
              "Both include Python, torch and transformers start-up."]
    if "levers" in results:
        lines += levers_markdown(results["levers"])
    return "\n".join(lines) + "\n"


# What the measurements run: the pipeline from a copy of HEAD, the rest from this checkout.
MEASURED_PATHS = ("src", "stages", "conf", "params.yaml", "dvc.yaml", "dvc.lock")


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
    from ift.io import read_jsonl, write_json, write_text
    from ift.modeling import load_model, load_tokenizer
    from ift.trainer import make_trainer
    from ift.verify import export_head

    refuse_uncommitted(repo)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                            check=True).stdout.strip()
    copy = Path(tempfile.mkdtemp(prefix="ift-bench-"))
    try:
        export_head(repo, copy)
        print("pipeline: the committed default pipeline from scratch", file=sys.stderr, flush=True)
        pipeline = bench_pipeline(copy)
        params = load_params(copy / "params.yaml")
        tokenizer = load_tokenizer(copy / "models/base", padding_side="left")
        prompts = [row["input"] for row in read_jsonl(copy / "data/hydrated/test.jsonl")]

        print("eval: tuned tiny model vs the tutorial's loop", file=sys.stderr, flush=True)
        tiny = bench_eval(load_model(copy / "models/tuned"), load_tokenizer(copy / "models/tuned", "left"),
                          prompts, params.eval.max_new_tokens, params.eval.batch_size)
        print("eval: pythia-70m shape vs the tutorial's loop", file=sys.stderr, flush=True)
        pythia = bench_eval(pythia_70m_shaped_model(), tokenizer, prompts[:params.eval.batch_size],
                            params.eval.max_new_tokens, params.eval.batch_size)

        print(f"train: pythia-70m shape with train={train_preset}", file=sys.stderr, flush=True)
        train_cfg = validate(compose([f"train={train_preset}"], copy / "conf")).train
        train = bench_train(tokenizer, train_cfg)
        # Padding waste with the train settings each kind of data is used with: the demo with
        # train/default (model=tiny), alpaca-like lengths with train/<train_preset>.
        waste = {}
        for name, dataset, cfg in (
            ("demo", _demo_dataset(copy, tokenizer, params.train.max_length), params.train),
            ("alpaca_like", synthetic_dataset(alpaca_like_lengths(2000), vocab=len(tokenizer)), train_cfg),
        ):
            with tempfile.TemporaryDirectory(prefix="ift-bench-waste-") as work_dir:
                trainer = make_trainer(pythia_70m_shaped_model(), tokenizer, dataset, cfg, 0, Path(work_dir))
                waste[name] = padding_waste(trainer)
        print("whole process: the tutorial's loop vs dvc repro -f -s tuned_eval", file=sys.stderr, flush=True)
        whole_process = bench_whole_process(copy)
        if levers:
            print("levers: every option against the one kept", file=sys.stderr, flush=True)
            lever_results = bench_levers(copy, params, train_cfg)
    finally:
        shutil.rmtree(copy, ignore_errors=True)

    results = {
        "commit": commit,  # refuse_uncommitted: the measured code is exactly this commit's
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"),
        "eval_speedup_vs_tutorial_loop": {"tiny": tiny["speedup"], "pythia70m": pythia["speedup"]},
        "train_tokens_per_second": train["tokens_per_second"],
        "train_mfu": train["mfu"],
        "padding_waste": waste,
        "noop_repro_seconds": pipeline["noop_repro_seconds"],
        "pipeline_seconds": pipeline["pipeline_seconds"],
        "whole_process_speedup_vs_tutorial": whole_process["speedup"],
        "eval": {"tiny": tiny, "pythia70m": pythia},
        "train": train,
        "pipeline": pipeline,
        "whole_process": whole_process,
    }
    if levers:
        results["levers"] = lever_results
    write_json(out_dir / "bench.json", results)
    write_text(out_dir / "bench.md", markdown(results))
    return results


def _demo_dataset(copy: Path, tokenizer, max_length: int):
    from ift.io import read_jsonl
    from ift.tokenization import build_dataset

    return build_dataset(read_jsonl(copy / "data/hydrated/train.jsonl"), tokenizer, max_length, "demo")[0]
