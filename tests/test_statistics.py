import math

import numpy as np
import pytest
import sacrebleu
from scipy import stats

from ift.evaluation import example_scores
from ift.statistics import (
    EVAL_METRICS,
    estimate,
    metric_value,
    paired_difference,
    score_arrays,
    stderr_key,
    with_stderrs,
)


def arrays_of(predictions, references, losses=None):
    """Score arrays for predictions against references, with (loss sum, tokens) per example."""
    losses = losses or [(1.0, 2)] * len(predictions)
    return score_arrays([{**s, "answer_loss_sum": loss, "answer_tokens": tokens}
                         for s, (loss, tokens) in zip(example_scores(predictions, references), losses)])


def test_mean_metric_stderr_is_the_closed_form():
    rng = np.random.default_rng(0)
    refs = [f"w{i}" for i in range(400)]
    preds = [r if rng.random() < 0.7 else "x" for r in refs]
    arrays = arrays_of(preds, refs)
    result = estimate("exact_match", arrays, seed=0)
    p = arrays["exact_match"].mean()
    assert result["stderr"] == pytest.approx(stats.sem(arrays["exact_match"]))
    assert result["stderr"] == pytest.approx(math.sqrt(p * (1 - p) / 400), rel=0.01)
    assert result["low"] < p < result["high"]


def test_corpus_bleu_from_segment_statistics_is_sacrebleus():
    preds = ["the cat sat on the mat", "a dog ran in the park today", "red green blue", "one two three four"]
    refs = ["the cat sat on a mat", "a dog ran in the park", "red blue green", "one two three four"]
    assert metric_value("bleu", arrays_of(preds, refs)) == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score)


def test_answer_loss_is_token_weighted_and_perplexity_its_exp():
    arrays = arrays_of(["a", "b"], ["a", "c"], losses=[(3.0, 1), (1.0, 3)])
    assert metric_value("answer_loss", arrays) == pytest.approx(4.0 / 4)
    assert metric_value("answer_perplexity", arrays) == pytest.approx(math.e)


def test_bootstrap_is_seeded_and_shrinks_with_more_examples():
    rng = np.random.default_rng(1)
    losses = [(float(x), int(t)) for x, t in zip(rng.gamma(2.0, 1.0, 800), rng.integers(1, 5, 800))]
    small = arrays_of(["a"] * 200, ["a"] * 200, losses[:200])
    large = arrays_of(["a"] * 800, ["a"] * 800, losses)
    first, again = estimate("answer_loss", small, seed=3), estimate("answer_loss", small, seed=3)
    assert first == again
    assert estimate("answer_loss", small, seed=4)["stderr"] != first["stderr"]
    # 4x the examples: about half the standard error
    assert estimate("answer_loss", large, seed=3)["stderr"] == pytest.approx(first["stderr"] / 2, rel=0.25)
    assert first["low"] < metric_value("answer_loss", small) < first["high"]


def test_with_stderrs_puts_each_stderr_after_its_metric():
    arrays = arrays_of(["a", "b", "c"], ["a", "b", "x"])
    metrics = {m: float(metric_value(m, arrays)) for m in EVAL_METRICS} | {"n_examples": 3}
    keys = list(with_stderrs(metrics, arrays, seed=0))
    assert keys[:2] == ["exact_match", stderr_key("exact_match")] and keys[-1] == "n_examples"
    assert len(keys) == 2 * len(EVAL_METRICS) + 1


def test_mcnemar_uses_only_the_discordant_examples():
    refs = [f"w{i}" for i in range(100)]
    # both right on 50, only tuned right on 30, only base right on 10, both wrong on 10
    tuned = refs[:80] + ["x"] * 20
    base = refs[:50] + ["x"] * 30 + refs[80:90] + ["x"] * 10
    result = paired_difference("exact_match", arrays_of(tuned, refs), arrays_of(base, refs), seed=0)
    assert result["test"] == "McNemar exact"
    assert result["diff"] == pytest.approx(0.2)
    assert result["p_value"] == pytest.approx(stats.binomtest(30, 40).pvalue)
    assert result["low"] < 0.2 < result["high"]


def test_permutation_test_tells_a_difference_from_none():
    rng = np.random.default_rng(2)
    refs = [" ".join(rng.choice(["a", "b", "c", "d"], 4)) for _ in range(300)]
    noisy = [r if rng.random() < 0.5 else "zzz" for r in refs]
    same = paired_difference("token_f1", arrays_of(noisy, refs), arrays_of(noisy, refs), seed=0)
    assert same["diff"] == 0 and same["p_value"] == pytest.approx(1.0)
    better = paired_difference("bleu", arrays_of(refs, refs), arrays_of(noisy, refs), seed=0)
    assert better["test"] == "paired permutation"
    assert better["diff"] > 0 and better["p_value"] < 0.01 and better["low"] > 0
    assert paired_difference("bleu", arrays_of(refs, refs), arrays_of(noisy, refs), seed=0) == better
