"""bench.md: the targets, whether each is met, and the measurements behind them."""

from __future__ import annotations

from typing import Any

# Targets; a dotted key names a value inside one (e.g. the tiny model's speed-up).
TARGETS = {"eval_speedup_vs_tutorial_loop.tiny": (">=", 20), "eval_speedup_vs_tutorial_loop.pythia70m": (">=", 8),
           "train_mfu": (">=", 0.35), "padding_waste.demo": ("<=", 0.05), "padding_waste.alpaca_like": ("<=", 0.05),
           "noop_repro_seconds": ("<=", 2), "pipeline_seconds": ("<=", 180),
           "whole_process_speedup_vs_tutorial": (">=", 10), "queue_two_at_a_time_vs_one": ("<=", 1.3)}


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
              f"{t['measured_steps']} steps timed after warm-up"]
    if "train_footprints" in results:  # (older reports lack it)
        lines += ["", "## Full finetuning vs LoRA (pythia-70m shape, same settings otherwise)", "",
                  "Each in a fresh process; peak memory is the process's peak resident set size.", "",
                  "| training | tokens/s | peak memory (MiB) | above the process's start (MiB) |",
                  "| --- | ---: | ---: | ---: |"]
        for name, f in results["train_footprints"].items():
            lines.append(f"| {name} | {f['tokens_per_second']:.0f} | {f['peak_rss_mib']:.0f} | "
                         f"{f['peak_rss_over_start_mib']:.0f} |")
    lines += ["", "## Pipeline (default, from scratch)", "", "| stage | seconds | peak memory (MiB) |",
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
