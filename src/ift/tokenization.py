"""Token-level rules shared by every stage: special tokens, the pad-token rule, and how a
prompt/answer pair becomes training ids with a loss mask."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ift.errors import UserError

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# Pythia's special tokens: id 0 is BOS/EOS/UNK, id 1 is a real padding entry.
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|padding|>"
# Added only when a tokenizer has no padding entry of its own (never EOS: see ensure_pad_token).
ADDED_PAD_TOKEN = "<|pad|>"
IGNORE_INDEX = -100  # the label value cross-entropy skips: prompt tokens and padding


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel | None) -> None:
    """Give the tokenizer a pad token distinct from EOS, and record pad/EOS in the model.

    Padding with EOS would mask EOS out of the loss and the model would never learn to
    stop. Pythia has a real `<|padding|>` entry; otherwise a pad token is added and the
    embeddings are resized.
    """
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        if PAD_TOKEN in tokenizer.get_vocab():
            tokenizer.pad_token = PAD_TOKEN
        else:
            tokenizer.add_special_tokens({"pad_token": ADDED_PAD_TOKEN})
            log.info("added pad token %s (id %d)", ADDED_PAD_TOKEN, tokenizer.pad_token_id)
    if model is None:
        return
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    for config in (model.config, model.generation_config):
        config.pad_token_id = tokenizer.pad_token_id
        config.eos_token_id = tokenizer.eos_token_id


def encode_example(prompt: str, answer: str, tokenizer: PreTrainedTokenizerBase) -> dict[str, list[int]]:
    """Token ids of prompt + answer + EOS, and a mask that is 1 on the answer and EOS.

    Prompt and answer are tokenized separately, so the prompt tokens are exactly what the
    model sees at inference (no BPE merge across the boundary), and EOS is appended so the
    model learns to stop.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {
        "input_ids": prompt_ids + answer_ids,
        "completion_mask": [0] * len(prompt_ids) + [1] * len(answer_ids),
    }


def encode_rows(
    rows: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase, max_length: int, source: str
) -> tuple[list[dict[str, list[int]]], int]:
    """Encode hydrated rows; return (those within max_length tokens, how many were longer).

    Raises a UserError when every row is too long, naming the longest and what to change.
    """
    encoded, lengths = [], []
    for row in rows:
        example = encode_example(row["input"], row["output"], tokenizer)
        lengths.append(len(example["input_ids"]))
        if lengths[-1] <= max_length:
            encoded.append(example)
    if rows and not encoded:
        raise UserError(
            f"{source}: all {len(rows)} examples are longer than train.max_length={max_length} tokens "
            f"(shortest: {min(lengths)}, longest: {max(lengths)}); raise train.max_length to at least "
            f"{min(lengths)} or shorten the data")
    return encoded, len(rows) - len(encoded)


def build_dataset(
    rows: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase, max_length: int, source: str
) -> tuple[Dataset, dict[str, int]]:
    """Tokenize hydrated rows; drop (and count) those longer than max_length."""
    from datasets import Dataset

    encoded, too_long = encode_rows(rows, tokenizer, max_length, source)
    if too_long:
        log.warning("%s: dropped %d of %d examples longer than train.max_length=%d tokens",
                    source, too_long, len(rows), max_length)
    stats = {"examples": len(encoded), "dropped_too_long": too_long,
             "tokens": sum(len(e["input_ids"]) for e in encoded),
             "answer_tokens": sum(sum(e["completion_mask"]) for e in encoded)}
    return Dataset.from_list(encoded), stats
