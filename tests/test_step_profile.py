"""benchmarks/step_profile.py: where a train step's time goes, and what that allows MFU."""

from types import SimpleNamespace

import pytest
import torch

from benchmarks.step_profile import PARTS, ProfiledSteps, mfu_bound, part_of, profiled_shares


@pytest.mark.parametrize(("name", "shapes", "part"), [
    ("aten::mm", [[12, 32], [32, 300]], "matmul"),  # the LM head is a matmul, though its output is wide
    ("aten::_scaled_dot_product_flash_attention_for_cpu", [[1, 2, 9, 16]], "attention"),
    ("aten::bmm", [[16, 9, 8], [16, 8, 9]], "attention"),  # packed_eager's scores: the linear layers are mm/addmm
    ("aten::_softmax", [[2, 4, 9, 9], [], []], "attention"),
    ("aten::_softmax", [[12, 300], [], []], "vocabulary_wide"),  # a softmax over the vocabulary is no attention
    ("aten::_log_softmax", [[12, 300], [], []], "vocabulary_wide"),
    ("aten::copy_", [[300, 32], [300, 32], []], "other"),  # the embedding matrix: its last dim is the hidden size
    ("aten::add_", [[[4], [4]]], "other"),  # a list of tensors
    ("## Call CompiledFxGraph fuap4ym7sluach", [], "vocabulary_wide"),  # the compiled loss (train.compile_loss)
])
def test_each_operator_counts_for_one_part(name, shapes, part):
    assert part_of(name, shapes, vocab_size=300) == part


def test_a_profiled_step_of_a_model_splits_its_time_into_the_parts(tiny_model):
    vocab = tiny_model.get_output_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (4, 16))
    callback = ProfiledSteps(warmup=0)
    callback.on_step_end(None, SimpleNamespace(global_step=0), None)
    loss = torch.nn.functional.cross_entropy(tiny_model(input_ids=ids).logits.flatten(0, 1), ids.flatten())
    loss.backward()
    callback.on_train_end(None, None, None)
    shares = profiled_shares(callback, vocab)
    assert set(shares) == set(PARTS) and sum(shares.values()) == pytest.approx(1)
    assert shares["matmul"] > 0 and shares["vocabulary_wide"] > 0 and shares["other"] > 0, shares


def test_mfu_is_bounded_by_the_share_of_the_rest():
    assert mfu_bound(0.08, {"matmul": 0.2, "attention": 0.1, "vocabulary_wide": 0.3, "other": 0.4}) == pytest.approx(
        0.08 / 0.7)
