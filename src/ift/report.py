"""The baseline-vs-tuned comparison: a Markdown report and the data for its bar plot."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ift.errors import UserError
from ift.prompts import PROMPT_NO_INPUT, PROMPT_WITH_INPUT
from ift.statistics import (
    CONFIDENCE,
    EVAL_METRICS,
    RESAMPLES,
    Z95,
    estimate,
    paired_difference,
    score_arrays,
    stderr_key,
)

# Metrics where higher is better; the rest (loss, perplexity) are better lower.
HIGHER_IS_BETTER = ("exact_match", "token_f1", "rouge_l", "bleu")
# Metrics on a 0..1 scale, plotted side by side (bleu is 0..100, loss is unbounded).
PLOTTED = ("exact_match", "token_f1", "rouge_l")
# lm-evaluation-harness warns about paired comparisons on fewer examples than this.
SMALL_TEST_SET = 300
CUT_SHARE = 0.05  # warn when more answers than this stop at eval.max_new_tokens
# Warn when more answers than this are one and the same text, a quarter of all answers more
# often than the references are.
COLLAPSE_SHARE = 0.5


def generation_warnings(predictions: Sequence[dict], max_new_tokens: int, model: str) -> list[str]:
    """What makes a model's metrics mean less than they seem: answers cut at the token limit,
    references the limit cannot reach, answers collapsed into one text."""
    n = len(predictions)
    if not n:
        return []
    warnings = []
    cut = sum(bool(p.get("stopped_at_limit")) for p in predictions)
    if cut > CUT_SHARE * n:
        warnings.append(f"{model}: {cut} of {n} answers ({cut / n:.1%}) stopped at eval.max_new_tokens="
                        f"{max_new_tokens} before EOS: they are cut; raise eval.max_new_tokens")
    long_refs = [p["reference_tokens"] for p in predictions if p.get("reference_tokens", 0) > max_new_tokens]
    if long_refs:
        warnings.append(f"{model}: {len(long_refs)} of {n} reference answers are longer than eval.max_new_tokens="
                        f"{max_new_tokens} tokens (longest {max(long_refs)}): no answer can match them")
    text, count = Counter(p["prediction"].strip() for p in predictions).most_common(1)[0]
    in_references = sum(p["reference"].strip() == text for p in predictions)
    if count > COLLAPSE_SHARE * n and count - in_references > COLLAPSE_SHARE / 2 * n:  # labels may repeat
        warnings.append(f"{model}: {count} of {n} answers ({count / n:.1%}) are the same text "
                        f"({_cell(text, 60)}): the model answers alike whatever the question")
    return warnings


def _fmt(value: float) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _cell(text: str, limit: int = 300) -> str:
    """Text made safe for one Markdown table cell."""
    text = text if len(text) <= limit else text[:limit] + "…"
    return text.replace("|", "\\|").replace("\n", "<br>") or "*(empty)*"


def question_of(prompt: str) -> str:
    """The instruction (and input) of a hydrated prompt, without the template's boilerplate."""
    body = prompt.split("### Instruction:\n", 1)[-1]
    return body.removesuffix("\n\n### Response:").replace("\n\n### Input:\n", "\nInput: ")


def _interval(estimate: dict) -> str:
    return f"{_fmt(estimate['value'])} [{_fmt(estimate['low'])}, {_fmt(estimate['high'])}]"


def _p_value(p: float, test: str) -> str:
    """A p-value to three decimals; a permutation test's smallest, 2/(resamples+1), as a bound."""
    smallest = 2 / (RESAMPLES + 1)
    if test != "McNemar exact" and p <= smallest * (1 + 1e-9):
        return f"≤ {smallest:.3f}"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def comparison_markdown(
    baseline_preds: Sequence[dict], tuned_preds: Sequence[dict], num_examples: int,
    baseline_name: str, tuned_name: str, seed: int, max_new_tokens: int,
) -> str:
    """Each metric with its 95% interval for both models, the paired difference with its
    interval and p-value; then example rows: question, reference, base and tuned answers."""
    if [p["input"] for p in baseline_preds] != [p["input"] for p in tuned_preds]:
        raise UserError("the baseline's and the tuned model's predictions are not on the same test examples "
                        "in the same order: rerun both eval stages (`dvc repro -f baseline_eval tuned_eval`)")
    base = score_arrays([p["scores"] for p in baseline_preds])
    tuned = score_arrays([p["scores"] for p in tuned_preds])
    n = len(tuned_preds)
    lines = [
        "# Baseline vs tuned",
        "",
        f"Base model: `{baseline_name}`; tuned model: `{tuned_name}`; {n} test examples, greedy decoding.",
        "",
        *(f"> **Warning**: {w}" + "\n" for w in (generation_warnings(baseline_preds, max_new_tokens, "base model")
                                              + generation_warnings(tuned_preds, max_new_tokens, "tuned model"))),
        f"Each value with its {CONFIDENCE:.0%} interval over test examples; the difference is paired (the same "
        "examples), with a two-sided p-value. ✓ marks a significant (p < 0.05) improvement.",
        "",
        "| metric | baseline | tuned | tuned − baseline | p | test |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for key in EVAL_METRICS:
        diff = paired_difference(key, tuned, base, seed)
        better = diff["p_value"] < 0.05 and (diff["diff"] > 0) == (key in HIGHER_IS_BETTER)
        lines.append(
            f"| {key} | {_interval(estimate(key, base, seed))} | {_interval(estimate(key, tuned, seed))} "
            f"| {diff['diff']:+.4f} [{diff['low']:+.4f}, {diff['high']:+.4f}]{' ✓' if better else ''} "
            f"| {_p_value(diff['p_value'], diff['test'])} | {diff['test']} |")
    if n < SMALL_TEST_SET:
        lines += ["", f"Only {n} test examples: intervals are wide and p-values rough below {SMALL_TEST_SET} "
                      "(raise data.test_size or eval.limit)."]
    shown = min(num_examples, n)
    if shown:
        lines += ["", f"## {shown} test examples", "",
                  "| question | reference | base model | tuned model |", "| --- | --- | --- | --- |"]
        for base_row, new in zip(baseline_preds[:shown], tuned_preds[:shown]):
            lines.append(f"| {_cell(question_of(new['input']))} | {_cell(new['reference'])} "
                         f"| {_cell(base_row['prediction'])} | {_cell(new['prediction'])} |")
    return "\n".join(lines) + "\n"


def comparison_plot_rows(baseline: dict, tuned: dict) -> list[dict]:
    """Rows for the bar plot declared in dvc.yaml: per metric and model its value and 95%
    interval (the plotted metrics are means, so value +- z x stderr, as in comparison.md)."""
    rows = []
    for key in PLOTTED:
        for model, metrics in (("baseline", baseline), ("tuned", tuned)):
            value, half = float(metrics[key]), float(Z95) * float(metrics.get(stderr_key(key), 0.0))
            rows.append({"metric": key, "model": model, "value": round(value, 6),
                         "low": round(value - half, 6), "high": round(value + half, 6)})
    return rows


RUN_FILE = "reports/train/run.json"  # publish's copy of the train stage's run.json


def model_card(base: dict, data: dict, train_params: dict, seed: int, training: dict, run: str) -> str:
    """models/tuned/README.md: what this model is, how it was made, how to use it.

    `run` (training.run_key) names the run by its inputs, not by the commit that will hold it:
    a commit in the model would make the same training give other bytes on every commit.
    """
    import yaml

    base_name = base["name_or_path"]
    revision = base.get("resolved_revision") or base.get("revision")
    data_name = data.get("name") or data.get("path") or data["source"]
    data_revision = data.get("resolved_revision")
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        *([f"base_model: {base_name}"] if base.get("resolved_revision") else []),
        "tags: [instruction-finetuning, ift]",
        "---",
        "",
        f"# {base_name}, instruction-finetuned",
        "",
        f"- Base model: `{base_name}`" + (f" at revision `{revision}`" if revision else ""),
        f"- Data: `{data_name}`" + (f" at revision `{data_revision}`" if data_revision else "")
        + f" ({data['counts']['train']} training / {data['counts']['test']} test rows)",
        "- Prompt: the Alpaca template (below); the answer follows `### Response:`.",
        f"- Training: {training['global_step']} optimizer steps, last logged training loss "
        f"{training['final_loss']:.4f}; loss on the answer and EOS only.",
        f"- Run `{run}`: a hash of the seed, the train params, the base model, the training data and",
        "  the code. The commit or DVC experiment that produced this model lists the same key in",
        f"  `{RUN_FILE}`: `git log --all --oneline -S {run} -- {RUN_FILE}`. Its evaluation metrics",
        "  are in that commit's `reports/tuned/metrics.json`.",
        "",
        "## Training parameters",
        "",
        "```yaml",
        yaml.safe_dump({"seed": seed, "train": train_params}, sort_keys=False).rstrip(),
        "```",
        "",
        "## Prompt",
        "",
        "The model was trained on prompts in one of these two templates, exactly (the second when",
        "an example has no input), and answers best in them:",
        "",
        "```text",
        PROMPT_WITH_INPUT,
        "```",
        "",
        "```text",
        PROMPT_NO_INPUT,
        "```",
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        'tokenizer = AutoTokenizer.from_pretrained("models/tuned", padding_side="left")',
        'model = AutoModelForCausalLM.from_pretrained("models/tuned")',
        f"prompt = {PROMPT_NO_INPUT!r}.format(instruction=\"Name a fruit.\")",
        'ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")  # as in training',
        "answer = model.generate(**ids, max_new_tokens=64)[0, ids.input_ids.shape[1]:]",
        "print(tokenizer.decode(answer, skip_special_tokens=True).strip())",
        "```",
        "",
        "The tokenizer pads with its pad token (never EOS); the generation config carries the pad",
        "and EOS ids, so generation stops at EOS. Or: `ift ask \"your question\"`.",
    ]
    return "\n".join(lines) + "\n"
