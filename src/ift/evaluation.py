"""Batched generation, metrics, and predictions for the eval stages."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from ift.config import MAX_NEW_TOKENS_CAP
from ift.statistics import EVAL_METRICS, metric_value, score_arrays, stderr_key, with_stderrs
from ift.tokenization import IGNORE_INDEX, encode_example

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# metrics.json keys, in order: each eval metric and its standard error, then the example count.
METRIC_KEYS = (*(key for m in EVAL_METRICS for key in (m, stderr_key(m))), "n_examples")


HYDRATED_STATS = "data/hydrated/stats.json"  # hydrate's token-length percentiles per split


def fitted_max_new_tokens(configured: int | None, hydrated_stats: dict) -> int:
    """eval.max_new_tokens, or where it is null the longest training answer in tokens (EOS
    included: an answer that long still ends with EOS), at most MAX_NEW_TOKENS_CAP."""
    if configured is not None:
        return configured
    return max(1, min(hydrated_stats["train"]["tokens"]["answer"]["max"], MAX_NEW_TOKENS_CAP))


def _length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), to minimise padding."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def generation_kwargs(tokenizer: PreTrainedTokenizerBase, max_new_tokens: int) -> dict:
    """Decoding settings shared by the eval stages and `ift ask`/`ift chat`: greedy, stop at EOS."""
    return {
        "max_new_tokens": max_new_tokens,
        "do_sample": False,
        "num_beams": 1,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all `rows` share, leaving every row at least one token of its own.

    0 for a single row: there is nothing to share, and a separate prefill would only cost.
    """
    if len(rows) < 2:
        return 0
    limit = min(len(row) for row in rows) - 1
    first = rows[0]
    for i in range(limit):
        if any(row[i] != first[i] for row in rows):
            return i
    return max(limit, 0)


def _batch_inputs(model: PreTrainedModel, rows: Sequence[Sequence[int]], pad_token_id: int,
                  share_prefix: bool = True) -> dict:
    """generate() inputs for one batch, with the prompts' shared prefix computed once.

    Prompts share the template's opening, so the shared prefix runs through the model once,
    at batch size 1, and its KV cache is repeated for every row (`ift bench --levers`:
    "shared-prefix KV cache"). The padding goes between the prefix and each row's own tokens,
    with the attention mask off on it; generate() numbers positions by the mask, so every
    real token has the position it has in the plain left-padded batch.
    """
    from transformers import DynamicCache

    # A model whose generation config asks for its own cache type (static, sliding, ...)
    # must get it from generate(): no shared prefix then.
    share_prefix = share_prefix and getattr(model.generation_config, "cache_implementation", None) is None
    shared = shared_prefix_length(rows) if share_prefix else 0
    width = shared + max(len(row) - shared for row in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        own = row[shared:]
        input_ids[r, :shared] = torch.tensor(row[:shared], dtype=torch.long)
        input_ids[r, width - len(own):] = torch.tensor(own, dtype=torch.long)
        attention_mask[r, :shared] = 1
        attention_mask[r, width - len(own):] = 1
    inputs = {"input_ids": input_ids.to(model.device), "attention_mask": attention_mask.to(model.device)}
    if shared:
        cache = DynamicCache(config=model.config)
        model(input_ids=inputs["input_ids"][:1, :shared], cache=cache, use_cache=True, logits_to_keep=1)
        cache.batch_repeat_interleave(len(rows))
        inputs["cache"] = cache
    return inputs


def _through_eos(tokens: Sequence[int], eos_token_id: int | None) -> list[int]:
    """A row of generated tokens up to and including the first EOS (the padding after it dropped)."""
    tokens = list(tokens)
    return tokens[:tokens.index(eos_token_id) + 1] if eos_token_id in tokens else tokens


@torch.inference_mode()
def generate_token_ids(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int,
    desc: str = "generating",
    share_prefix: bool = True,
) -> list[list[int]]:
    """Greedy continuations of `prompts`, in order: the generated token ids through EOS.

    Batched (by length, with an attention mask and, unless `share_prefix` is off, the
    shared prefix computed once), stopping at EOS; `max_new_tokens` counts only generated
    tokens, and the prompt is cut off by token count, not characters.
    """
    model.eval()
    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"] if prompts else []
    generated: list[list[int]] = [[] for _ in prompts]
    batches = _length_sorted_batches([len(ids) for ids in encoded], batch_size)
    with tqdm(total=len(prompts), desc=desc, unit="ex") as bar:
        for batch in batches:
            inputs = _batch_inputs(model, [encoded[i] for i in batch], tokenizer.pad_token_id, share_prefix)
            output = model.generate(**inputs, **generation_kwargs(tokenizer, max_new_tokens))
            for i, row in zip(batch, output[:, inputs["input_ids"].shape[1]:].tolist()):
                generated[i] = _through_eos(row, tokenizer.eos_token_id)
            bar.update(len(batch))
    return generated


def stopped_at_limit(tokens: Sequence[int], max_new_tokens: int, eos_token_id: int | None) -> bool:
    """Whether generation was cut by max_new_tokens rather than ending with EOS."""
    return len(tokens) >= max_new_tokens and tokens[-1] != eos_token_id  # (max_new_tokens >= 1)


def decode_answers(tokenizer: PreTrainedTokenizerBase, generated: Sequence[Sequence[int]]) -> list[str]:
    """Answer texts of generate_token_ids' output (special tokens dropped)."""
    return tokenizer.batch_decode(generated, skip_special_tokens=True)


def generate_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int,
    desc: str = "generating",
    share_prefix: bool = True,
) -> list[str]:
    """Greedy answers for `prompts`, in order (generate_token_ids, decoded)."""
    return decode_answers(tokenizer, generate_token_ids(
        model, tokenizer, prompts, max_new_tokens, batch_size, desc, share_prefix))


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
    for batch in _length_sorted_batches([len(e["input_ids"]) for e in examples], batch_size):
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
