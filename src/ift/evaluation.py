"""Scoring for the eval stages: text metrics, teacher-forced answer loss, and evaluate(), which
generates (ift.generation), scores and keeps each example's scores in its prediction."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ift.generation import decode_answers, generate_token_ids, length_sorted_batches, stopped_at_limit
from ift.statistics import EVAL_METRICS, metric_value, score_arrays, stderr_key, with_stderrs
from ift.tokenization import IGNORE_INDEX, encode_example

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# metrics.json keys, in order: each eval metric and its standard error, then the example count.
METRIC_KEYS = (*(key for m in EVAL_METRICS for key in (m, stderr_key(m))), "n_examples")


@torch.inference_mode()
def answer_losses(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    answers: Sequence[str],
    batch_size: int,
) -> list[tuple[float, int]]:
    """Per example: (summed cross-entropy over its answer tokens, EOS included; their count),
    teacher-forced on the references."""
    model.eval()
    device = model.device
    examples = [encode_example(p, a, tokenizer) for p, a in zip(prompts, answers)]
    losses: list[tuple[float, int]] = [(0.0, 0)] * len(examples)
    for batch in length_sorted_batches([len(e["input_ids"]) for e in examples], batch_size):
        width = max(len(examples[i]["input_ids"]) for i in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids, mask = examples[i]["input_ids"], examples[i]["completion_mask"]
            input_ids[row, :len(ids)] = torch.tensor(ids)
            attention_mask[row, :len(ids)] = 1
            labels[row, :len(ids)] = torch.tensor([t if m else IGNORE_INDEX for t, m in zip(ids, mask)])
        logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
        # Position t predicts token t+1.
        shift_labels = labels[:, 1:].to(device)
        token_losses = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().transpose(1, 2), shift_labels, ignore_index=IGNORE_INDEX, reduction="none")
        sums, counts = token_losses.sum(dim=1).tolist(), (shift_labels != IGNORE_INDEX).sum(dim=1).tolist()
        for row, i in enumerate(batch):
            losses[i] = (sums[row], int(counts[row]))
    return losses


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1 between one prediction and one reference."""
    pred_tokens = normalize_answer(prediction).split()
    ref_tokens = normalize_answer(reference).split()
    if not pred_tokens or not ref_tokens:
        return float(pred_tokens == ref_tokens)
    common = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def example_scores(predictions: Sequence[str], references: Sequence[str]) -> list[dict]:
    """Per example: exact_match (stripped equality), token_f1, rouge_l (F-measure), and the
    sacrebleu statistics (n-gram matches and totals, lengths) that corpus BLEU sums."""
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import BLEU

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    # The segment statistics corpus_score sums (sacrebleu.significance resamples them the same way).
    bleu_stats = BLEU()._extract_corpus_statistics(list(predictions), [list(references)]) if predictions else []
    return [{"exact_match": float(p.strip() == r.strip()), "token_f1": token_f1(p, r),
             "rouge_l": scorer.score(r, p)["rougeL"].fmeasure, "bleu_stats": [int(x) for x in stats]}
            for p, r, stats in zip(predictions, references, bleu_stats)]


def text_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """exact_match, token_f1, rouge_l averaged over examples; corpus BLEU (0-100)."""
    if not predictions:
        return {"exact_match": 0.0, "token_f1": 0.0, "rouge_l": 0.0, "bleu": 0.0}
    arrays = score_arrays([{**s, "answer_loss_sum": 0.0, "answer_tokens": 0}
                           for s in example_scores(predictions, references)])
    return {m: float(metric_value(m, arrays)) for m in ("exact_match", "token_f1", "rouge_l", "bleu")}


def evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[dict[str, str]],
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    desc: str = "generating",
) -> tuple[dict[str, float], list[dict]]:
    """Generate for every row and score against the references; return (metrics, predictions).

    Each prediction keeps its example's scores, so that metrics can be resampled and two
    models compared example by example (ift.statistics), and its token counts, so that the
    report can say when answers were cut; `seed` seeds the bootstrap.
    """
    prompts = [r["input"] for r in rows]
    references = [r["output"] for r in rows]
    generated = generate_token_ids(model, tokenizer, prompts, max_new_tokens, batch_size, desc)
    predictions = decode_answers(tokenizer, generated)
    reference_tokens = [len(ids) for ids in tokenizer(references, add_special_tokens=False)["input_ids"]
                        ] if rows else []
    losses = answer_losses(model, tokenizer, prompts, references, batch_size)
    scores = [{**text, "answer_loss_sum": loss, "answer_tokens": tokens}
              for text, (loss, tokens) in zip(example_scores(predictions, references), losses)]
    arrays = score_arrays(scores)
    metrics = {m: float(metric_value(m, arrays)) for m in EVAL_METRICS} if rows else dict.fromkeys(EVAL_METRICS, 0.0)
    metrics = with_stderrs({**metrics, "n_examples": len(rows)}, arrays, seed)
    eos = tokenizer.eos_token_id
    records = [{"input": p, "reference": r, "prediction": y, "scores": s, "reference_tokens": n,
                "generated_tokens": len(g), "stopped_at_limit": stopped_at_limit(g, max_new_tokens, eos)}
               for p, r, y, s, n, g in zip(prompts, references, predictions, scores, reference_tokens, generated)]
    return {k: metrics[k] for k in METRIC_KEYS}, records
