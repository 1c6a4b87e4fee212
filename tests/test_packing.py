"""Padding-free batches (each batch packed into one row) must train exactly like padded ones:
the loss of a packed batch equals the loss of the same examples unpacked, so no token
attends across examples."""

import pytest
import torch

from tests.helpers import TRAIN_ROWS, sharpen, train_batch


def batch_loss(model, tokenizer, padding_free: bool, tmp_path, attn_implementation: str = "sdpa",
               **train_overrides) -> float:
    trainer, batch = train_batch(model, tokenizer, padding_free, tmp_path, attn_implementation, **train_overrides)
    if padding_free:
        assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    else:
        assert (batch["attention_mask"] == 0).any()  # there is padding to mask
    with torch.no_grad():
        return float(trainer.compute_loss(model, batch))


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager", "packed_eager"])
def test_packed_loss_equals_unpacked_loss(tiny_tokenizer, tiny_model, tmp_path, attn_implementation):
    sharpen(tiny_model)
    unpacked = batch_loss(tiny_model, tiny_tokenizer, False, tmp_path / "a")
    packed = batch_loss(tiny_model, tiny_tokenizer, True, tmp_path / "b", attn_implementation)
    assert packed == pytest.approx(unpacked, rel=1e-5)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "packed_eager"])
def test_packed_row_padded_to_a_multiple_has_the_unpacked_loss(tiny_tokenizer, tiny_model, tmp_path,
                                                              attn_implementation):
    """train.pad_to_multiple_of with padding_free: the row's pad examples change nothing."""
    sharpen(tiny_model)
    unpacked = batch_loss(tiny_model, tiny_tokenizer, False, tmp_path / "a")
    width = train_batch(tiny_model, tiny_tokenizer, True, tmp_path / "b")[1]["input_ids"].shape[1]
    padded = train_batch(tiny_model, tiny_tokenizer, True, tmp_path / "c", pad_to_multiple_of=64)[1]
    assert padded["input_ids"].shape[1] % 64 == 0 and padded["input_ids"].shape[1] > width
    packed = batch_loss(tiny_model, tiny_tokenizer, True, tmp_path / "d", attn_implementation, pad_to_multiple_of=64)
    assert packed == pytest.approx(unpacked, rel=1e-5)


def test_padded_batches_are_padded_to_the_multiple_by_trl(tiny_tokenizer, tiny_model, tmp_path):
    """Without padding_free, train.pad_to_multiple_of goes to TRL's collator: wider rows, masked."""
    width = train_batch(tiny_model, tiny_tokenizer, False, tmp_path / "a")[1]["input_ids"].shape[1]
    _, batch = train_batch(tiny_model, tiny_tokenizer, False, tmp_path / "b", pad_to_multiple_of=64)
    assert batch["input_ids"].shape[1] % 64 == 0 and batch["input_ids"].shape[1] > width
    assert (batch["attention_mask"][:, width:] == 0).all()


def test_packing_without_boundaries_would_differ(tiny_tokenizer, tiny_model):
    """The check above can fail: the same packed row without restarting positions (so one
    long sequence, attention across examples) gives a different loss."""
    from ift.tokenization import encode_example

    examples = [encode_example(r["input"], r["output"], tiny_tokenizer) for r in TRAIN_ROWS]
    ids = torch.tensor([sum((e["input_ids"] for e in examples), [])])
    labels = torch.tensor([sum(([t if m else -100 for t, m in zip(e["input_ids"], e["completion_mask"])]
                                for e in examples), [])])
    boundaries = torch.tensor([sum((list(range(len(e["input_ids"]))) for e in examples), [])])
    sharpen(tiny_model)
    tiny_model.eval()
    with torch.no_grad():
        separate = tiny_model(input_ids=ids, position_ids=boundaries, labels=labels).loss
        joined = tiny_model(input_ids=ids, labels=labels).loss
    assert abs(float(separate) - float(joined)) > 1e-3 * abs(float(separate))
