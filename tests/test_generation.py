"""Batched generation with the shared prefix computed once gives the answers of one-at-a-time generation."""

import pytest
import torch

from ift.generation import (
    PrefixPlan,
    _batch_inputs,
    generate_answers,
    generation_kwargs,
    prefill_positions,
    prefix_plan,
    shared_prefix_length,
)
from ift.prompts import format_prompt
from tests.helpers import sharpen


@pytest.mark.parametrize(("rows", "expected"), [
    ([[1, 2, 3, 4], [1, 2, 5]], 2),
    ([[1, 2, 3], [1, 2, 3]], 2),       # identical rows keep one token of their own
    ([[7, 2], [1, 2]], 0),
    ([[1, 2, 3]], 0),                  # a single row shares nothing
    ([[1], [1, 2]], 0),
])
def test_shared_prefix_length(rows, expected):
    assert shared_prefix_length(rows) == expected


@pytest.mark.parametrize(("rows", "plan", "positions"), [
    # Two branches after the shared [1, 2], each with a longer prefix of its own: 2 x 5 + 4 x 2,
    # against 2 + 4 x 5 with the opening alone.
    ([[1, 2, 3, 4, 5, 9], [1, 2, 3, 4, 5, 8, 8], [1, 2, 7, 7, 7, 6], [1, 2, 7, 7, 7, 5]],
     PrefixPlan([[1, 2, 3, 4, 5], [1, 2, 7, 7, 7]], [0, 0, 1, 1]), 18),
    # A row alone in its branch continues the shared opening: 2 x 7 + 4 x 2, against 2 + 4 x 6.
    ([[1, 2, 3, 4, 5, 6, 7, 10], [1, 2, 3, 4, 5, 6, 7, 11], [1, 2, 3, 4, 5, 6, 7, 12], [1, 2, 8, 9]],
     PrefixPlan([[1, 2, 3, 4, 5, 6, 7], [1, 2]], [0, 0, 0, 1]), 22),
    # Branches that share nothing more: the opening, once.
    ([[1, 2, 3, 9], [1, 2, 4, 9], [1, 2, 5, 9]], PrefixPlan([[1, 2]], [0, 0, 0]), 2 + 3 * 2),
    # Branching would compute more: 2 x 4 + 3 x 4 against 2 + 3 x 4.
    ([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 7], [1, 2, 8, 9, 9, 9]], PrefixPlan([[1, 2]], [0, 0, 0]), 14),
    # A tie (2 x 3 + 4 x 1 against 2 + 4 x 2) keeps the opening.
    ([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 6, 7], [1, 2, 6, 8]], PrefixPlan([[1, 2]], [0, 0, 0, 0]), 10),
    ([[7, 2], [1, 2]], PrefixPlan([], []), 2 * 2),  # nothing shared: no prefix
    ([[1, 2, 3]], PrefixPlan([], []), 3),
])
def test_prefix_plan_computes_each_prefix_once_where_that_is_fewer_positions(rows, plan, positions):
    assert prefix_plan(rows) == plan
    assert prefill_positions(rows, plan) == positions


def test_prefix_sharing_can_keep_to_the_opening_or_be_off():
    rows = [[1, 2, 3, 4, 5, 9], [1, 2, 3, 4, 5, 8, 8], [1, 2, 7, 7, 7, 6], [1, 2, 7, 7, 7, 5]]
    assert prefix_plan(rows, "opening") == PrefixPlan([[1, 2]], [0, 0, 0, 0])
    assert prefix_plan(rows, "none") == PrefixPlan([], [])


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
    # Both templates: a prefix per template branch, the no-input prompt alone in its own and
    # continuing the shorter shared opening (padded in the prefixes' batch).
    prefixes, of_row = prefix_plan(rows)
    assert len(prefixes) == 2 and of_row[4] != of_row[0] and len(prefixes[of_row[4]]) < len(prefixes[of_row[0]])
    inputs = _batch_inputs(tiny_model, rows, tiny_tokenizer.pad_token_id)
    assert "cache" in inputs, "these prompts share a prefix: it must be computed once"
    _assert_scores_equal_one_at_a_time(tiny_model, tiny_tokenizer, rows, inputs)


def _sliding_window_model(tokenizer):
    from transformers import MistralConfig, MistralForCausalLM

    return MistralForCausalLM(MistralConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, sliding_window=40, max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id))


def _recurrent_model(tokenizer):
    from transformers import MambaConfig, MambaForCausalLM

    return MambaForCausalLM(MambaConfig(
        vocab_size=len(tokenizer), hidden_size=32, state_size=4, num_hidden_layers=2, conv_kernel=4,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id))


# transformers' Mamba itself scores a left-padded batch otherwise than one row at a time: only its plan is checked.
@pytest.mark.parametrize(("build", "check_scores"), [(_sliding_window_model, True), (_recurrent_model, False)])
def test_no_shared_prefix_where_a_layer_does_not_keep_every_position(tiny_tokenizer, build, check_scores):
    """A row's padding sits between its prefix and its own tokens: a sliding window longer than
    a row's own tokens but shorter than its prompt would count it as context (scores off by
    tens, unguarded), and a recurrent state would take it in."""
    torch.manual_seed(0)
    model = build(tiny_tokenizer).eval()
    sharpen(model)
    rows = [tiny_tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    assert min(map(len, rows)) > 40
    inputs = _batch_inputs(model, rows, tiny_tokenizer.pad_token_id)
    assert "cache" not in inputs
    if check_scores:
        _assert_scores_equal_one_at_a_time(model, tiny_tokenizer, rows, inputs)


def _assert_scores_equal_one_at_a_time(model, tokenizer, rows, inputs):
    batched = _generate(model, tokenizer, inputs)
    for r, row in enumerate(rows):
        ids = torch.tensor([row])
        single = _generate(model, tokenizer, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
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
