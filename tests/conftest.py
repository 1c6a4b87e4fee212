"""Shared fixtures: a tiny tokenizer and model built offline (no Hub access, ever)."""

import os

import pytest

from tests.helpers import TEXTS

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from ift.tiny import build_tiny_tokenizer

    return build_tiny_tokenizer(TEXTS, vocab_size=300)


@pytest.fixture()
def tiny_model(tiny_tokenizer):
    from ift.config import TinyModelConfig
    from ift.tiny import build_tiny_model

    arch = TinyModelConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=256)
    return build_tiny_model(arch, tiny_tokenizer, seed=0)
