import pytest

from ift.evaluation import METRIC_KEYS, normalize_answer, text_metrics, token_f1


def test_normalize_answer_squad_style():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("an apple a day") == "apple day"


def test_token_f1_hand_computed():
    # prediction: "red dog cat blue" vs reference "red dog" -> common 2, P=2/4, R=2/2, F1=2/3
    assert token_f1("red dog cat blue", "red dog") == pytest.approx(2 / 3)
    assert token_f1("red dog", "red dog") == 1.0
    assert token_f1("fox", "red dog") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("", "dog") == 0.0
    # repeated tokens count with multiplicity: common = min(2,1) = 1 -> P=1/2, R=1 -> 2/3
    assert token_f1("dog dog", "dog") == pytest.approx(2 / 3)


def test_exact_match_is_stripped_equality():
    metrics = text_metrics([" red dog\n", "Red dog", "cat"], ["red dog", "red dog", "dog"])
    assert metrics["exact_match"] == pytest.approx(1 / 3)  # case matters, whitespace does not


def test_rouge_l_hand_computed():
    # LCS("a b c d", "a c d") = 3 -> P=3/4, R=3/3, F=2*0.75*1/(1.75)
    metrics = text_metrics(["a b c d"], ["a c d"])
    assert metrics["rouge_l"] == pytest.approx(2 * 0.75 / 1.75)


def test_bleu_perfect_and_zero():
    perfect = text_metrics(["the cat sat on the mat today"], ["the cat sat on the mat today"])
    assert perfect["bleu"] == pytest.approx(100.0)
    assert text_metrics(["xyz"], ["the cat sat on the mat"])["bleu"] == pytest.approx(0.0)


def test_empty_prediction_set():
    assert text_metrics([], [])["exact_match"] == 0.0


def test_metric_keys_contract():
    metrics = ("exact_match", "token_f1", "rouge_l", "bleu", "answer_loss", "answer_perplexity")
    assert METRIC_KEYS == (*(k for m in metrics for k in (m, f"{m}_stderr")), "n_examples")
