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


@pytest.fixture(scope="session")
def s3_server():
    """An S3-compatible server on 127.0.0.1 (moto's server mode, as DVC's own S3 tests use), with
    a bucket; yields the environment a DVC remote on it needs: endpoint URL and fake credentials."""
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, **{k.lower(): v for k, v in env.items()
                                                 if k != "AWS_DEFAULT_REGION"},
                 region_name="us-east-1").create_bucket(Bucket="team-artifacts")
    yield {"endpoint": endpoint, "env": env}
    server.stop()
