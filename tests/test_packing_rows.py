"""ift.packing: pad examples that bring a packed row to a multiple of N tokens."""

import torch
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from ift.packing import PackedRowPadding, pad_examples
from ift.tokenization import IGNORE_INDEX


def test_pad_examples_are_unlabelled_and_no_longer_than_the_longest_example():
    pieces = pad_examples(7, longest=3, pad_token_id=1)
    assert [len(p["input_ids"]) for p in pieces] == [3, 3, 1]
    assert all(set(p["input_ids"]) == {1} and set(p["labels"]) == {IGNORE_INDEX} for p in pieces)
    assert pad_examples(0, longest=3, pad_token_id=1) == []


def test_packed_row_is_padded_to_the_multiple_with_separate_pad_examples():
    collate = PackedRowPadding(DataCollatorForLanguageModeling(pad_token_id=1, padding_free=True), 8)
    batch = collate([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [-100, 9]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 1, 1, 1]]
    # The pad example starts at position 0: an example of its own, which no other token sees.
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2]]
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 5, 8]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9, -100, -100, -100]]


def test_a_row_already_at_the_multiple_gets_no_padding():
    collate = PackedRowPadding(DataCollatorForLanguageModeling(pad_token_id=1, padding_free=True), 5)
    batch = collate([{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]}])
    assert batch["input_ids"].shape == torch.Size([1, 5])


def test_padding_longer_than_the_longest_example_is_split_into_several_pad_examples():
    collate = PackedRowPadding(DataCollatorForLanguageModeling(pad_token_id=1, padding_free=True), 8)
    batch = collate([{"input_ids": [5, 6], "labels": [5, 6]}, {"input_ids": [7], "labels": [7]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 1, 1, 1, 1, 1]]
    assert batch["cu_seq_lens_q"].tolist() == [0, 2, 3, 5, 7, 8]  # pad examples of 2, 2 and 1
    assert batch["max_length_q"] == 2  # no attention block grows
