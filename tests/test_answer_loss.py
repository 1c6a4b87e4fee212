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
