"""Batched generation with the shared prefix computed once gives the answers of one-at-a-time generation."""

import pytest
import torch

from ift.generation import _batch_inputs, generate_answers, generation_kwargs, shared_prefix_length
from ift.prompts import format_prompt


@pytest.mark.parametrize(("rows", "expected"), [
    ([[1, 2, 3, 4], [1, 2, 5]], 2),
    ([[1, 2, 3], [1, 2, 3]], 2),       # identical rows keep one token of their own
    ([[7, 2], [1, 2]], 0),
    ([[1, 2, 3]], 0),                  # a single row shares nothing
    ([[1], [1, 2]], 0),
])
def test_shared_prefix_length(rows, expected):
    assert shared_prefix_length(rows) == expected


# Shared template, instructions and inputs of differing lengths, a repeated prompt, and a
# prompt that is another one's prefix plus a word.
PROMPTS = [format_prompt(instruction, input_) for instruction, input_ in [
    ("Reverse the order of the words.", "cat dog"), ("Reverse the order of the words.", "red fig kiwi pear"),
    ("Reverse the order of the words.", "cat dog"), ("Reverse the order of the words.", "cat dog red"),
    ("What is 2 plus one?", ""), ("What is 2 plus one?", "3 4 5 6 7"), ("Sort the words.", "apple"),
]]
MAX_NEW_TOKENS = 6


def _generate(model, tokenizer, inputs):
    with torch.inference_mode():
        return model.generate(**inputs, **generation_kwargs(tokenizer, MAX_NEW_TOKENS),
                              output_scores=True, return_dict_in_generate=True)


def test_shared_prefix_scores_equal_one_at_a_time(tiny_model, tiny_tokenizer):
    """Every step's scores, not only the greedy text: wrong positions or masks change them."""
    tiny_model.eval()
    rows = [tiny_tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    inputs = _batch_inputs(tiny_model, rows, tiny_tokenizer.pad_token_id)
    assert "cache" in inputs, "these prompts share a prefix: it must be computed once"
    batched = _generate(tiny_model, tiny_tokenizer, inputs)
    for r, row in enumerate(rows):
        ids = torch.tensor([row])
        single = _generate(tiny_model, tiny_tokenizer, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
        for step, scores in enumerate(single.scores):
            torch.testing.assert_close(batched.scores[step][r], scores[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_batched_answers_equal_one_at_a_time(tiny_model, tiny_tokenizer, batch_size):
    expected = []
    for prompt in PROMPTS:
        ids = tiny_tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        out = _generate(tiny_model, tiny_tokenizer, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
        expected.append(tiny_tokenizer.decode(out.sequences[0, ids.shape[1]:], skip_special_tokens=True))
    assert generate_answers(tiny_model, tiny_tokenizer, PROMPTS, MAX_NEW_TOKENS, batch_size) == expected


@pytest.mark.parametrize(("row", "expected"), [
    ([5, 6, 0, 1, 1], [5, 6, 0]),   # padding after EOS dropped
    ([0, 0], [0]),
    ([5, 6, 7], [5, 6, 7]),         # ran to max_new_tokens: no EOS
])
def test_generated_tokens_run_through_the_first_eos(row, expected):
    from ift.generation import through_eos

    assert through_eos(row, eos_token_id=0) == expected
