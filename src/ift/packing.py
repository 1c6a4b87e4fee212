"""Packed rows padded to a multiple of N tokens with whole pad examples.

With `padding_free`, each batch becomes one row as long as its examples together, so nearly
every row has a new length. On CPU each new matmul shape costs set-up time the first time a
process meets it (oneDNN, bf16), which made packed training slower than padded batches in a
fresh process (`ift bench --levers`). Padding each packed row up to a multiple of N leaves
few distinct lengths.

Written by hand because TRL's own `pad_to_multiple_of` pads a packed row with position ids
of 0, so each pad token becomes an example of its own: up to N-1 one-token examples per row,
each a whole block (as long as the row's longest example) in packed_eager's attention. Here
the padding is one or more pad examples, none longer than the row's longest example (a longer
one would enlarge every attention block); their labels are -100, so they add nothing to the
loss or to the labelled-token count, and they attend to nothing but themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ift.tokenization import IGNORE_INDEX

if TYPE_CHECKING:
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling


def pad_examples(count: int, longest: int, pad_token_id: int) -> list[dict[str, list[int]]]:
    """`count` pad tokens as examples of at most `longest` tokens each, unlabelled."""
    pieces = []
    while count > 0:
        length = min(count, longest)
        pieces.append({"input_ids": [pad_token_id] * length, "labels": [IGNORE_INDEX] * length})
        count -= length
    return pieces


class PackedRowPadding:
    """TRL's padding-free collator, its packed row padded to a multiple of `multiple` tokens
    with its own pad token."""

    def __init__(self, collate: DataCollatorForLanguageModeling, multiple: int):
        self.collate, self.multiple = collate, multiple

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        lengths = [len(example["input_ids"]) for example in examples]
        missing = -sum(lengths) % self.multiple
        return self.collate([*examples, *pad_examples(missing, max(lengths), self.collate.pad_token_id)])
