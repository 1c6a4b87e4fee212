"""Uncertainty of the eval metrics, and the paired tuned-vs-base comparison.

Every metric is computed from per-example scores (kept in predictions.jsonl), so that it
can be resampled: standard errors are closed form for per-example means and a seeded
bootstrap over examples for corpus-level metrics (BLEU, the token-weighted answer loss and
its perplexity), as lm-evaluation-harness does. The paired comparison uses McNemar's exact
test for exact match and a paired permutation test for the others, with scipy's
implementations; everything is deterministic given the seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

# Per-example means: closed-form standard error, normal 95% interval.
MEAN_METRICS = ("exact_match", "token_f1", "rouge_l")
# Corpus-level: bootstrap standard error and percentile interval.
CORPUS_METRICS = ("bleu", "answer_loss", "answer_perplexity")
EVAL_METRICS = MEAN_METRICS + CORPUS_METRICS
# 1000 resamples put a bootstrap standard error within ~2% of its limit (relative error of a
# standard deviation from B draws: 1/sqrt(2B)).
RESAMPLES = 1000
BATCH = 100  # resamples evaluated at once (an index array of 100 x n examples)
CONFIDENCE = 0.95
Z95 = stats.norm.ppf(0.5 + CONFIDENCE / 2)
BLEU_STATS = 10  # sacrebleu's per-segment statistics: hyp and ref length, 4 n-gram matches, 4 totals


def stderr_key(metric: str) -> str:
    """The metrics.json key of a metric's standard error (lm-evaluation-harness's name)."""
    return f"{metric}_stderr"


def score_arrays(scores: Sequence[Mapping]) -> dict[str, np.ndarray]:
    """The per-example scores of predictions.jsonl as arrays (one row per example)."""
    return {
        **{m: np.array([s[m] for s in scores], dtype=float) for m in MEAN_METRICS},
        "bleu_stats": np.array([s["bleu_stats"] for s in scores], dtype=float).reshape(-1, BLEU_STATS),
        "answer_loss_sum": np.array([s["answer_loss_sum"] for s in scores], dtype=float),
        "answer_tokens": np.array([s["answer_tokens"] for s in scores], dtype=float),
    }


def _bleu_from_stats(totals: np.ndarray) -> float:
    """Corpus BLEU (0-100) from summed segment statistics, by sacrebleu's own formula."""
    from sacrebleu.metrics import BLEU

    # The same private hook sacrebleu.significance uses to resample BLEU.
    return BLEU(effective_order=False)._compute_score_from_stats([int(x) for x in totals]).score


def metric_value(metric: str, arrays: Mapping[str, np.ndarray], idx: np.ndarray | None = None) -> np.ndarray:
    """`metric` over the examples `idx` (shape (..., n); all examples if None), one value per row."""
    if idx is None:
        idx = np.arange(len(arrays["answer_tokens"]))
    if metric in MEAN_METRICS:
        return arrays[metric][idx].mean(axis=-1)
    if metric == "bleu":
        totals = arrays["bleu_stats"][idx].sum(axis=-2)
        flat = totals.reshape(-1, BLEU_STATS)
        return np.array([_bleu_from_stats(row) for row in flat]).reshape(totals.shape[:-1])
    loss = arrays["answer_loss_sum"][idx].sum(axis=-1) / np.maximum(arrays["answer_tokens"][idx].sum(axis=-1), 1)
    if metric == "answer_loss":
        return loss
    if metric == "answer_perplexity":
        return np.exp(np.minimum(loss, 700.0))  # exp overflows a float past ~709
    raise KeyError(metric)


def _rng(seed: int, metric: str) -> np.random.Generator:
    """One generator per (seed, metric): a metric's resamples do not depend on the others'."""
    return np.random.default_rng([seed, *metric.encode()])


def estimate(metric: str, arrays: Mapping[str, np.ndarray], seed: int) -> dict[str, float]:
    """{value, stderr, low, high}: the metric with its standard error and 95% interval."""
    n = len(arrays["answer_tokens"])
    value = float(metric_value(metric, arrays))
    if n < 2:
        return {"value": value, "stderr": float("nan"), "low": float("nan"), "high": float("nan")}
    if metric in MEAN_METRICS:
        stderr = float(arrays[metric].std(ddof=1) / math.sqrt(n))
        return {"value": value, "stderr": stderr, "low": value - Z95 * stderr, "high": value + Z95 * stderr}
    result = stats.bootstrap(
        (np.arange(n),), lambda idx, axis: metric_value(metric, arrays, idx), vectorized=True, axis=-1,
        n_resamples=RESAMPLES, batch=BATCH, method="percentile", confidence_level=CONFIDENCE,
        rng=_rng(seed, metric))
    return {"value": value, "stderr": float(result.standard_error),
            "low": float(result.confidence_interval.low), "high": float(result.confidence_interval.high)}


def with_stderrs(metrics: Mapping[str, float], arrays: Mapping[str, np.ndarray], seed: int) -> dict[str, float]:
    """`metrics` with `<metric>_stderr` after each eval metric."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        out[key] = value
        if key in EVAL_METRICS:
            stderr = estimate(key, arrays, seed)["stderr"]
            out[stderr_key(key)] = None if math.isnan(stderr) else stderr  # one example: undefined
    return out


def paired_difference(metric: str, tuned: Mapping[str, np.ndarray], base: Mapping[str, np.ndarray],
                      seed: int) -> dict[str, float | str]:
    """Tuned minus base on the same examples: {diff, low, high, p_value, test}.

    The interval is normal over per-example differences for means and a paired percentile
    bootstrap otherwise. The p-value is McNemar's exact test for exact match (a binomial test
    on the examples only one model gets right) and a paired permutation test otherwise (each
    example's two scores swapped at random, which is what "no difference" allows).
    """
    n = len(tuned["answer_tokens"])
    diff = float(metric_value(metric, tuned) - metric_value(metric, base))
    if n < 2:
        return {"diff": diff, "low": float("nan"), "high": float("nan"), "p_value": float("nan"), "test": "-"}
    if metric in MEAN_METRICS:
        per_example = tuned[metric] - base[metric]
        half = Z95 * per_example.std(ddof=1) / math.sqrt(n)
        low, high = diff - half, diff + half
    else:
        interval = stats.bootstrap(
            (np.arange(n),), lambda idx, axis: metric_value(metric, tuned, idx) - metric_value(metric, base, idx),
            vectorized=True, axis=-1, n_resamples=RESAMPLES, batch=BATCH, method="percentile",
            confidence_level=CONFIDENCE, rng=_rng(seed, "paired-" + metric)).confidence_interval
        low, high = float(interval.low), float(interval.high)
    if metric == "exact_match":
        only_tuned = int(((tuned[metric] == 1) & (base[metric] == 0)).sum())
        only_base = int(((tuned[metric] == 0) & (base[metric] == 1)).sum())
        discordant = only_tuned + only_base
        p_value = stats.binomtest(only_tuned, discordant).pvalue if discordant else 1.0
        test = "McNemar exact"
    else:
        both = {key: np.concatenate([tuned[key], base[key]]) for key in tuned}  # tuned rows, then base rows
        p_value = stats.permutation_test(
            (np.arange(n), np.arange(n, 2 * n)),
            lambda x, y, axis: metric_value(metric, both, x) - metric_value(metric, both, y),
            permutation_type="samples", vectorized=True, axis=-1, n_resamples=RESAMPLES, batch=BATCH,
            rng=_rng(seed, "permutation-" + metric)).pvalue
        test = "paired permutation"
    return {"diff": diff, "low": low, "high": high, "p_value": float(p_value), "test": test}
