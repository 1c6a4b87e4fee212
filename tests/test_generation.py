"""Batched generation with the shared prefix computed once gives the answers of one-at-a-time generation."""

import pytest
import torch

from ift.evaluation import generate_answers, generation_kwargs, shared_prefix_length
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


def _one_at_a_time(model, tokenizer, prompts, max_new_tokens):
    answers = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 **generation_kwargs(tokenizer, max_new_tokens))
            answers.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    return answers


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_batched_answers_equal_one_at_a_time(tiny_model, tiny_tokenizer, batch_size):
    # Shared template, differing instructions and inputs of differing lengths: batches with a
    # long shared prefix, a short one, and (batch_size 3) a last batch of a single row.
    tasks = [("Reverse the order of the words.", "cat dog"), ("Reverse the order of the words.", "red fig kiwi pear"),
             ("What is 2 plus one?", ""), ("What is 2 plus one?", "3 4 5 6 7"), ("Sort the words.", "apple")]
    prompts = [format_prompt(instruction, input_) for instruction, input_ in tasks] + ["cat dog red"]
    expected = _one_at_a_time(tiny_model, tiny_tokenizer, prompts, max_new_tokens=8)
    assert any(expected), "the model must generate something for the comparison to mean anything"
    assert generate_answers(tiny_model, tiny_tokenizer, prompts, 8, batch_size) == expected
