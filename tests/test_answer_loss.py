"""The train step's hand-written loss (LM head only at labelled positions) and its logged metrics
match the plain computation: the model's own loss and entropy over the full logits."""

import pytest
import torch

from ift.config import TrainConfig
from ift.modeling import IGNORE_INDEX
from ift.training import build_dataset, make_trainer

ROWS = [{"input": f"### Instruction:\n{'word ' * n}\n\n### Response:", "output": "cat dog" * (n % 3 + 1)}
        for n in (3, 11, 6, 19, 1, 8)]


def _trainer_and_batch(model, tokenizer, tmp_path):
    with torch.no_grad():  # a random model predicts near-uniformly: sharpen it, so entropies differ
        for weight in model.parameters():
            weight.mul_(8)
    dataset, _ = build_dataset(ROWS, tokenizer, max_length=256, source="rows")
    cfg = TrainConfig(per_device_train_batch_size=len(ROWS), padding_free=False, max_steps=1, bf16=False)
    trainer = make_trainer(model, tokenizer, dataset, cfg, 0, tmp_path)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ROWS))])
    model.eval()
    return trainer, batch


def _plain_entropies(model, batch) -> torch.Tensor:
    """Entropy of the next-token distribution at every labelled position, from the full logits."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    log_probs = logits[batch["labels"][:, 1:] != IGNORE_INDEX].float().log_softmax(-1)
    return -(log_probs.exp() * log_probs).sum(-1)


def test_loss_equals_the_models_own_loss(tiny_model, tiny_tokenizer, tmp_path):
    trainer, batch = _trainer_and_batch(tiny_model, tiny_tokenizer, tmp_path)
    with torch.no_grad():
        ours = float(trainer.compute_loss(tiny_model, batch))
        plain = float(tiny_model(**batch).loss)
    assert ours == pytest.approx(plain, rel=1e-5)


def test_logged_entropy_equals_the_full_logits_entropy(tiny_model, tiny_tokenizer, tmp_path):
    trainer, batch = _trainer_and_batch(tiny_model, tiny_tokenizer, tmp_path)
    with torch.no_grad():
        trainer.compute_loss(tiny_model, batch)
    assert trainer._metrics["eval"]["entropy"][-1] == pytest.approx(float(_plain_entropies(tiny_model, batch).mean()),
                                                                   rel=1e-5)
