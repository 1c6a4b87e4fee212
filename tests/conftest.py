"""Shared fixtures: a tiny tokenizer and model built offline (no Hub access, ever)."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

TEXTS = [
    "Below is an instruction that describes a task. ### Instruction: ### Input: ### Response:",
    "Reverse the order of the words. cat dog red fig kiwi pear apple",
    "What is 2 plus one? 3 4 5 6 7 8 9 10 {braces} é ü 日本",
] * 20


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from ift.modeling import build_tiny_tokenizer

    return build_tiny_tokenizer(TEXTS, vocab_size=300)


@pytest.fixture()
def tiny_model(tiny_tokenizer):
    from ift.config import TinyModelConfig
    from ift.modeling import build_tiny_model

    arch = TinyModelConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=256)
    return build_tiny_model(arch, tiny_tokenizer, seed=0)
