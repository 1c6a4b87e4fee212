"""bench.md: the targets, whether each is met, and the measurements behind them."""

from __future__ import annotations

from typing import Any

# Targets (issue "Performance against what users would run instead"); a dotted key names a
# value inside one (e.g. the tiny model's speed-up).
TARGETS = {
    "train_speedup_vs_trl": (">=", 3),
    "train_loss_vs_trl_max_relative_difference": ("<=", 0.01),
    "train_mfu": (">=", 0.30),
    "generate_speedup_vs_batched_generate.tiny": (">=", 1.5),
    "generate_speedup_vs_batched_generate.pythia70m": (">=", 1.5),
    "identical_to_batched_generate.tiny": (">=", 1.0),
    "identical_to_batched_generate.pythia70m": (">=", 1.0),
    "long_answers_speedup_vs_tutorial_loop": (">=", 30),
    "pipeline_seconds": ("<=", 90),
    "noop_repro_seconds": ("<=", 1),
    "padding_waste.demo": ("<=", 0.05),
    "padding_waste.alpaca_like": ("<=", 0.05),
    "queue_two_at_a_time_vs_one": ("<=", 1.3),
}


def shown(value: float, near: float) -> str:
    """`value` to 3 significant digits, or as many more as it takes not to read as `near` (a target
    it misses by less than the rounding)."""
    for digits in range(3, 10):
        text = f"{value:.{digits}g}"
        if value == near or float(text) != near:
            return text
    return repr(value)


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


def targets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """bench.json's `targets`: each key's value, its target and whether it is met."""
    return {key: {"value": target_value(results, key), "target": f"{op} {target}", "met": target_met(results, key)}
            for key, (op, target) in TARGETS.items()}


def steps_timed(steps: int) -> str:
    return f"{steps} step{'s' * (steps != 1)} timed after a warm-up step"


def peak_readings(train: dict[str, Any]) -> str:
    """Which readings of the matmul peak the MFU divides by (older reports read it once)."""
    readings = train.get("matmul_peak_readings", [])
    if len(readings) < 2:
        return ""
    return (" (the higher of its readings before and after our timed steps, "
            + " and ".join(f"{r / 1e12:.2f}" for r in readings) + " TFLOP/s)")


def long_answers_ceiling(long: dict[str, Any]) -> str:
    """What no implementation could beat: our answers' decode FLOPs at the measured matmul peak."""
    return (f" Our answers' decode steps need {long['decode_flops'] / 1e12:.2f} TFLOP "
            f"({long['decode_flops_counted']}). With the prefill free and every step at the "
            f"{long['matmul_peak_dtype']} matmul peak measured in this run "
            f"({long['matmul_peak_flops_per_second'] / 1e12:.2f} TFLOP/s), ours would be at most "
            f"{long['speedup_ceiling_at_peak']:.1f}x the tutorial's rate; it ran at "
            f"{long['ours_fraction_of_peak']:.2f} of that peak.")


def step_time_shares(train: dict[str, Any]) -> str:
    """Where our train step's operator time went (benchmarks/step_profile.py)."""
    shares = train["step_time_shares"]
    return (f"Of our step's operator time (torch.profiler, a run of its own), matrix multiplies took "
            f"{shares['matmul']:.0%}, attention {shares['attention']:.0%} (its kernels, or its batched matmuls, "
            f"softmax and mask), work on vocabulary-wide tensors "
            f"(the loss, log-softmax, entropy, accuracy and casts of the logits, no FLOPs in the count) "
            f"{shares['vocabulary_wide']:.0%}, and the rest {shares['other']:.0%}.")


def shortfall_reasons(results: dict[str, Any]) -> dict[str, str]:
    """What in the same run's measurements bounds each target that can fall short here."""
    prefill = results["eval"]["pythia70m"]["prefill_tokens"]
    long = results["long_answers"]
    per_token = long["speedup"] * long["ours_mean_generated_tokens"] / long["tutorial_mean_generated_tokens"]
    stages = results["pipeline"]["stages"]
    train = results["train"]
    mfu = ({"train_mfu": f"{step_time_shares(train)} Were the matrix multiplies and attention free, MFU would be "
                         f"at most {train['mfu_if_matmul_and_attention_took_no_time']:.2f}."}
           if "step_time_shares" in train else {})  # (older reports lack it)
    return {
        **mfu,
        "generate_speedup_vs_batched_generate.pythia70m":
            "With random weights every row runs to max_new_tokens on both sides, so the decode steps (the 50k "
            f"LM head at each) are the same work; ours saves prefill only: {prefill['ours']} positions against "
            f"{prefill['batched_generate']} ({prefill['batched_generate'] / prefill['ours']:.2f}x fewer). "
            "Identical ids rule out bf16.",
        "long_answers_speedup_vs_tutorial_loop":
            "The tutorial's max_length=100 counts the prompt, so its answers stop at "
            f"{long['tutorial_mean_generated_tokens']:.0f} tokens against our "
            f"{long['ours_mean_generated_tokens']:.0f}: "
            f"per generated token the ratio is {per_token:.1f}x.{long_answers_ceiling(long)}",
        "pipeline_seconds":
            f"fetch took {stages['fetch']['seconds']:.0f} s of it (with model=tiny it pretrains the base model, the "
            f"offline stand-in for a download) and train {stages['train']['seconds']:.0f} s; each of the six stages "
            "is a new Python process that imports torch and transformers. Less pretraining or finetuning "
            "costs the tuned model's exact match (reports/performance.md).",
    }


def shortfalls(results: dict[str, Any]) -> list[str]:
    """A line for each target not met: by how much, and why (shortfall_reasons)."""
    reasons = shortfall_reasons(results)
    lines = []
    for key, (op, target) in TARGETS.items():
        if not target_met(results, key):
            value = target_value(results, key)
            short = target / value if op == ">=" else value / target
            lines.append(f"- `{key}`: {shown(value, target)} against {op} {target}, {shown(short, 1)}x short. "
                         f"{reasons.get(key, '')}".rstrip())
    return lines


def markdown(results: dict[str, Any]) -> str:
    measured = f" of commit {results['commit']}" if "commit" in results else ""  # (older reports lack it)
    lines = ["# Benchmark", "", f"`ift bench`{measured} on {results['machine']}, {results['date']}. "
             "All numbers were measured side by side in this one run; ratios are what count.", "",
             "| key | value | target | met |", "| --- | ---: | ---: | :---: |"]
    for key, (op, target) in TARGETS.items():
        met = "yes" if target_met(results, key) else "**no**"
        lines.append(f"| `{key}` | {shown(target_value(results, key), target)} | {op} {target} | {met} |")
    if "prefill_tokens" in results["eval"]["pythia70m"]:  # (older reports lack what the reasons cite)
        missed = shortfalls(results)
        lines += ["", "Targets not met, by how much, and why:", "", *missed] if missed else []
    t = results["train"]
    trl = t["trl"]
    flops = t["required_flops_per_second"]
    lines += ["", "## Training step (pythia-70m shape, alpaca-like lengths): ours vs TRL as a user writes it", "",
              "| trainer | tokens/s | supervised tokens/s | MFU |", "| --- | ---: | ---: | ---: |",
              f"| ours (train={results.get('train_preset', 'pythia-70m')}) | {t['tokens_per_second']:.0f} | "
              f"{t['supervised_tokens_per_second']:.0f} | {t['mfu']:.3f} |",
              f"| TRL SFTTrainer, SFTConfig defaults | {trl['tokens_per_second']:.0f} | "
              f"{trl['supervised_tokens_per_second']:.0f} | {trl['mfu']:.3f} |", "",
              f"- The same {t['examples_per_step']} examples per optimizer step, in the same order, from the same "
              f"initial weights; {steps_timed(t['measured_steps'])}; {t['precision']}. The peer "
              "(benchmarks/peers.py) takes our batch, accumulation, learning rate, schedule and seed, and leaves "
              "everything else to SFTConfig's defaults (padded batches, the LM head at every position, gradient "
              "checkpointing on).",
              *([f"- The warm-up took {t['warmup_seconds']:.1f} s for ours"
                 + (" (it compiles the loss's vocabulary-wide work, train.compile_loss: a one-off cost in a run)"
                    if t.get("compile_loss") else "")
                 + f" and {trl['warmup_seconds']:.1f} s for TRL's."] if "warmup_seconds" in t else []),
              "- Logged losses of the first steps, ours / TRL's: "
              + ", ".join(f"{a:.4f} / {b:.4f}" for a, b in zip(t["losses"][:trl["first_steps_compared"]],
                                                            trl["losses"][:trl["first_steps_compared"]]))
              + f" (largest relative difference {trl['max_relative_loss_difference']:.2e}).",
              f"- MFU counts the FLOPs the step must do: {t['flops_counted_as']}. Per second, ours: "
              + ", ".join(f"{part} {value / 1e12:.3f} TFLOP/s" for part, value in flops.items())
              + f"; over the bf16 matrix-multiply peak measured in the same run{peak_readings(t)}, "
              f"{t['matmul_peak_flops_per_second'] / 1e12:.2f} TFLOP/s."]
    if "step_time_shares" in t:  # (older reports lack it)
        lines.append(f"- {step_time_shares(t)}")
    lines += ["", "## Generation: ours vs batched `generate()` and vs the tutorial's loop", "",
              "| model | examples | ours (ex/s) | batched generate (ex/s) | speedup | identical ids | "
              "tutorial (ex/s) | vs tutorial |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in ("tiny", "pythia70m"):
        e = results["eval"][name]
        lines.append(f"| {name} | {e['examples']} | {e['ours_examples_per_second']:.1f} | "
                     f"{e['batched_generate_examples_per_second']:.1f} | {e['speedup_vs_batched_generate']:.2f} | "
                     f"{e['identical_to_batched_generate']:.3f} | {e['tutorial_examples_per_second']:.2f} | "
                     f"{e['speedup']:.1f} |")
    e = results["eval"]["tiny"]
    lines += ["", "Ours and batched generate() each ran twice, in both orders (the means); the tutorial's loop once. "
              f"Ours: {e['ours_settings']}; batched generate: {e['batched_generate_settings']}; tutorial: "
              f"{e['tutorial_settings']}. Against the tutorial, answers agree in their first tokens "
              f"({e['first_tokens_agree']:.3f} on the tiny model). The pythia-70m-shaped model has random weights "
              "(it never emits EOS), so everyone generates up to their limits there; its prompts use the demo "
              "tokenizer."]
    if "decode_steps" in e:  # (older reports lack it)
        steps = e["decode_steps"]
        lines += ["", f"generate() stops a batch once every row has emitted EOS: on the tiny model our batches ran "
                  f"{steps['run']} decode steps, against {steps['without_stopping_at_eos']} at max_new_tokens "
                  "for each."]
    long = results["long_answers"]
    lines += ["", "## Long answers (lamini_docs-like, pythia-70m shape): ours vs the tutorial's loop", "",
              f"{long['examples']} prompts of {long['mean_prompt_tokens']:.0f} tokens on average (questions of "
              f"~20 tokens in the Alpaca template). Ours: {long['ours_settings']}, "
              f"{long['ours_mean_generated_tokens']:.0f} tokens per answer, {long['ours_examples_per_second']:.2f} "
              f"ex/s. The tutorial ({long['tutorial_settings']}, on {long['tutorial_examples']} of them): "
              f"{long['tutorial_mean_generated_tokens']:.0f} tokens per answer, "
              f"{long['tutorial_examples_per_second']:.3f} ex/s. Ratio of examples/s: {long['speedup']:.1f}x "
              "(ours generates the longer answers)."]
    if "train_footprints" in results:  # (older reports lack it)
        first = next(iter(results["train_footprints"].values()))
        timed = f"; tokens/s over {steps_timed(first['measured_steps'])}" if "measured_steps" in first else ""
        lines += ["", "## Full finetuning vs LoRA (pythia-70m shape, same settings otherwise)", "",
                  f"Each in a fresh process; peak memory is the process's peak resident set size{timed}.", "",
                  "| training | tokens/s | peak memory (MiB) | above the process's start (MiB) |",
                  "| --- | ---: | ---: | ---: |"]
        for name, f in results["train_footprints"].items():
            lines.append(f"| {name} | {f['tokens_per_second']:.0f} | {f['peak_rss_mib']:.0f} | "
                         f"{f['peak_rss_over_start_mib']:.0f} |")
    lines += ["", "## Pipeline (default, from scratch)", "", "| stage | seconds | peak memory (MiB) |",
              "| --- | ---: | ---: |"]
    for stage, s in results["pipeline"]["stages"].items():
        lines.append(f"| {stage} | {s['seconds']:.1f} | {s['peak_rss_mib']:.0f} |")
    slowest = max(results["pipeline"]["stages"].items(), key=lambda item: item[1]["seconds"])
    lines += ["", f"Each stage ran as its own `dvc repro --single-item` (dvc's start-up included); a `dvc repro` "
              f"with nothing to do took {results['noop_repro_seconds']:.2f} s (median of 3). The slowest stage, "
              f"{slowest[0]}, took {slowest[1]['seconds'] / results['pipeline_seconds']:.0%} of the whole"
              + (" (with model=tiny it pretrains the tiny base model: the offline stand-in for a download)."
                 if slowest[0] == "fetch" else ".")]
    if "queue" in results:  # (older reports lack it)
        q = results["queue"]
        lines += ["", "## A queue of two experiments: one at a time vs two at a time", "",
                  "Two `dvc exp run --queue` experiments (other learning rates, "
                  f"train.max_steps={q['train_max_steps']}) "
                  f"took {q['one_at_a_time_seconds']:.1f} s with `dvc queue start -j 1` and "
                  f"{q['two_at_a_time_seconds']:.1f} s with `-j 2`: {q['ratio']:.2f}x. Two at a time, each stage "
                  "takes its share of the cores (`ift.threads`)."]
    if "levers" in results:
        from benchmarks.levers import levers_markdown

        lines += levers_markdown(results["levers"])
    return "\n".join(lines) + "\n"
