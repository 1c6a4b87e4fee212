"""What the benchmark runs on: pythia-70m's shape with random weights, and data shaped like real data."""

from __future__ import annotations

import math
import random
from pathlib import Path

import torch

# EleutherAI/pythia-70m's shape (config.json of the Hub repo), for weights we cannot download here.
PYTHIA_70M_SHAPE = dict(vocab_size=50304, hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                        intermediate_size=2048, max_position_embeddings=2048, rotary_pct=0.25)
# The shapes of the presets' other sizes (their Hub config.json files): what differs from pythia-70m's.
PYTHIA_SHAPES = {
    "pythia-70m": PYTHIA_70M_SHAPE,
    "pythia-160m": {**PYTHIA_70M_SHAPE, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                    "intermediate_size": 3072},
    "pythia-410m": {**PYTHIA_70M_SHAPE, "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                    "intermediate_size": 4096},
}


def pythia_shaped_model(size: str = "pythia-70m", seed: int = 0):
    """A GPT-NeoX model of `size`'s shape (a key of PYTHIA_SHAPES) with random weights from `seed`."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(**PYTHIA_SHAPES[size], bos_token_id=0, eos_token_id=0, pad_token_id=1))
    return model.eval()


def alpaca_like_lengths(count: int, seed: int = 0, max_length: int | None = None) -> list[tuple[int, int]]:
    """(prompt, answer) token lengths shaped like Alpaca's in a Pythia tokenizer; with `max_length`,
    only examples within it, as the train stage keeps (ift.tokenization).

    A lognormal fit by eye (Alpaca itself is not reachable here): prompts ~40 tokens of
    template plus a median ~25 of instruction and input; answers with median ~45 and a long
    tail, capped at 1,000.
    """
    rng = random.Random(seed)
    lengths: list[tuple[int, int]] = []
    while len(lengths) < count:
        example = (40 + min(int(rng.lognormvariate(math.log(25), 0.6)), 400),
                   max(1, min(int(rng.lognormvariate(math.log(45), 0.9)), 1000)))
        if max_length is None or sum(example) <= max_length:
            lengths.append(example)
    return lengths


def synthetic_dataset(lengths: list[tuple[int, int]], vocab: int, seed: int = 0):
    """Tokenized prompt/answer examples with the given lengths (random ids; EOS ends the answer)."""
    from datasets import Dataset

    rng = random.Random(seed)
    rows = []
    for prompt, answer in lengths:
        ids = [rng.randrange(2, vocab) for _ in range(prompt + answer - 1)] + [0]
        rows.append({"input_ids": ids, "completion_mask": [0] * prompt + [1] * answer})
    return Dataset.from_list(rows)


def demo_dataset(copy: Path, tokenizer, max_length: int):
    """The demo's training split in `copy` (a built pipeline), tokenized as the train stage does."""
    from ift.io import read_jsonl
    from ift.tokenization import build_dataset

    return build_dataset(read_jsonl(copy / "data/hydrated/train.jsonl"), tokenizer, max_length, "demo")[0]


def lamini_like_prompts(tokenizer, count: int, question_tokens: int = 20, seed: int = 0) -> list[str]:
    """Alpaca prompts (no input) whose questions are about `question_tokens` tokens, as in
    lamini_docs (its answers run to ~100 tokens: generated here with max_new_tokens 128).

    Words drawn from the tokenizer's own vocabulary, so each is one token or close to it.
    """
    from ift.prompts import format_prompt

    rng = random.Random(seed)
    words = sorted(w.lstrip("Ġ") for w in tokenizer.get_vocab() if w.startswith("Ġ") and w[1:].isalpha())
    prompts = []
    for _ in range(count):
        question = " ".join(rng.choice(words) for _ in range(question_tokens)) + "?"
        prompts.append(format_prompt(question, None))
    return prompts
