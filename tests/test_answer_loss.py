"""The train step's hand-written loss (LM head only at labelled positions) and its logged entropy
match the plain computation: the model's own loss, and the entropy of the full logits."""

import pytest
import torch

from ift.tokenization import IGNORE_INDEX
from tests.helpers import sharpen, train_batch


def _plain_entropies(model, batch) -> torch.Tensor:
    """Entropy of the next-token distribution at every labelled position, from the full logits."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    log_probs = logits[batch["labels"][:, 1:] != IGNORE_INDEX].float().log_softmax(-1)
    return -(log_probs.exp() * log_probs).sum(-1)


def test_loss_equals_the_models_own_loss(tiny_model, tiny_tokenizer, tmp_path):
    sharpen(tiny_model)
    trainer, batch = train_batch(tiny_model, tiny_tokenizer, False, tmp_path)
    with torch.no_grad():
        ours = float(trainer.compute_loss(tiny_model, batch))
        plain = float(tiny_model(**batch).loss)
    assert ours == pytest.approx(plain, rel=1e-5)


def test_logged_entropy_equals_the_full_logits_entropy(tiny_model, tiny_tokenizer, tmp_path):
    sharpen(tiny_model)  # a random model predicts near-uniformly: every entropy would be ~log(vocab)
    trainer, batch = train_batch(tiny_model, tiny_tokenizer, False, tmp_path)
    with torch.no_grad():
        trainer.compute_loss(tiny_model, batch)
    assert trainer._metrics["eval"]["entropy"][-1] == pytest.approx(float(_plain_entropies(tiny_model, batch).mean()),
                                                                   rel=1e-5)


def test_logged_token_accuracy_equals_the_full_logits_accuracy(tiny_model, tiny_tokenizer, tmp_path):
    sharpen(tiny_model)
    trainer, batch = train_batch(tiny_model, tiny_tokenizer, False, tmp_path)
    with torch.no_grad():
        logits = tiny_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]  # a view: edits reach the batch
    labelled = labels != IGNORE_INDEX
    # A random model predicts no label: make every other labelled token its own prediction.
    targets = labels[labelled]
    targets[::2] = logits[labelled].argmax(-1)[::2]
    labels[labelled] = targets
    plain = float((logits[labelled].argmax(-1) == labels[labelled]).float().mean())
    assert 0.4 < plain < 0.7  # neither none nor all right: a wrong count would show
    with torch.no_grad():
        trainer.compute_loss(tiny_model, batch)
    assert trainer._metrics["eval"]["mean_token_accuracy"][-1] == pytest.approx(plain, rel=1e-6)


def _loss_and_gradients(tiny_model, tiny_tokenizer, work_dir, **train_overrides):
    """compute_loss on one batch: the loss, the logged metrics and the gradients."""
    trainer, batch = train_batch(tiny_model, tiny_tokenizer, True, work_dir, **train_overrides)
    tiny_model.zero_grad()
    loss = trainer.compute_loss(tiny_model, batch, num_items_in_batch=(batch["labels"] != IGNORE_INDEX).sum())
    loss.backward()
    metrics = {name: values[-1] for name, values in trainer._metrics["eval"].items()}
    return float(loss), metrics, [p.grad.clone() for p in tiny_model.parameters() if p.grad is not None]


@pytest.mark.slow
def test_the_compiled_loss_computes_the_eager_loss_metrics_and_gradients(tiny_model, tiny_tokenizer, tmp_path):
    sharpen(tiny_model)
    eager = _loss_and_gradients(tiny_model, tiny_tokenizer, tmp_path / "eager")
    compiled = _loss_and_gradients(tiny_model, tiny_tokenizer, tmp_path / "compiled", compile_loss=True)
    assert set(eager[1]) == {"entropy", "mean_token_accuracy"}
    assert compiled[0] == pytest.approx(eager[0], rel=1e-5)
    assert compiled[1] == pytest.approx(eager[1], rel=1e-5)
    assert len(compiled[2]) == len(eager[2])
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(compiled[2], eager[2]))


def test_compile_loss_swaps_in_a_compiled_loss_and_leaves_the_default_eager(tiny_model, tiny_tokenizer, tmp_path):
    from ift.trainer import loss_terms

    eager, _ = train_batch(tiny_model, tiny_tokenizer, True, tmp_path / "eager")
    compiled, _ = train_batch(tiny_model, tiny_tokenizer, True, tmp_path / "compiled", compile_loss=True)
    assert eager.loss_terms is loss_terms
    assert compiled.loss_terms is not loss_terms and compiled.loss_terms._torchdynamo_orig_callable is loss_terms


def test_under_bf16_the_loss_gets_the_bf16_logits_uncopied(tiny_model, tiny_tokenizer, tmp_path):
    """accelerate's cast of the model's outputs to fp32 is taken off: loss_terms casts the logits itself."""
    from ift.trainer import loss_terms

    trainer, _ = train_batch(tiny_model, tiny_tokenizer, True, tmp_path, bf16=True)
    seen = []

    def recording_loss_terms(logits, targets):
        seen.append(logits.dtype)
        return loss_terms(logits, targets)

    trainer.loss_terms = recording_loss_terms
    trainer.train()
    assert seen == [torch.bfloat16]
