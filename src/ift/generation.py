"""Batched greedy generation for the eval stages and `ift ask`: length-sorted batches, left
padding, the prompts' shared prefixes computed once, and the answer length fitted to the data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, NamedTuple

import torch
from tqdm.auto import tqdm

from ift.config import MAX_NEW_TOKENS_CAP

if TYPE_CHECKING:
    from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

HYDRATED_STATS = "data/hydrated/stats.json"  # hydrate's token-length percentiles per split


def fitted_max_new_tokens(configured: int | None, hydrated_stats: dict) -> int:
    """eval.max_new_tokens, or where it is null the longest training answer in tokens (EOS
    included: an answer that long still ends with EOS), at most MAX_NEW_TOKENS_CAP."""
    if configured is not None:
        return configured
    return max(1, min(hydrated_stats["train"]["tokens"]["answer"]["max"], MAX_NEW_TOKENS_CAP))


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
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


class PrefixPlan(NamedTuple):
    """The prefixes a batch computes once, and for each row the index of the one it continues."""

    prefixes: list[list[int]]
    prefix_of_row: list[int]


# How a batch's prompts share their prefixes' KV cache: one prefix per branch after the shared
# opening where that computes less (the default), the shared opening only, or not at all.
PrefixSharing = Literal["branches", "opening", "none"]


def prefix_plan(rows: Sequence[Sequence[int]], sharing: PrefixSharing = "branches") -> PrefixPlan:
    """What one batch computes once, by `sharing`.

    The rows' shared opening, or, where it computes fewer prefill positions, a prefix per
    branch: the rows grouped by their first token after the shared opening, each group's
    common prefix computed once. The Alpaca templates with and without an input share only
    their first words, and each shares the rest of its own opening. A row alone in its branch
    continues the shared opening; no prefix where the rows share nothing (a single row too).
    """
    shared = shared_prefix_length(rows) if sharing != "none" else 0
    if not shared:
        return PrefixPlan([], [])
    opening = PrefixPlan([list(rows[0][:shared])], [0] * len(rows))
    if sharing == "opening":
        return opening
    rows_by_next_token: dict[int, list[int]] = {}
    for r, row in enumerate(rows):
        rows_by_next_token.setdefault(row[shared], []).append(r)
    branched = PrefixPlan([], [0] * len(rows))
    for members in rows_by_next_token.values():
        length = shared_prefix_length([rows[r] for r in members]) if len(members) > 1 else shared
        prefix = list(rows[members[0]][:length])
        if prefix not in branched.prefixes:
            branched.prefixes.append(prefix)
        index = branched.prefixes.index(prefix)
        for r in members:
            branched.prefix_of_row[r] = index
    return min(opening, branched, key=lambda plan: prefill_positions(rows, plan))  # a tie keeps the opening


def _layout(rows: Sequence[Sequence[int]], plan: PrefixPlan) -> tuple[list[list[int]], int, int]:
    """Each row's prefix under `plan`, the prefixes' padded width and the rows' own tokens' width."""
    row_prefixes = [plan.prefixes[i] for i in plan.prefix_of_row] if plan.prefixes else [[] for _ in rows]
    prefix_width = max((len(prefix) for prefix in plan.prefixes), default=0)
    own_width = max(len(row) - len(prefix) for row, prefix in zip(rows, row_prefixes))
    return row_prefixes, prefix_width, own_width


def prefill_positions(rows: Sequence[Sequence[int]], plan: PrefixPlan) -> int:
    """Token positions a batch's prefill computes under `plan`: the prefixes, padded to the
    longest, then every row's own tokens, padded to the longest."""
    _, prefix_width, own_width = _layout(rows, plan)
    return len(plan.prefixes) * prefix_width + len(rows) * own_width


def _prefix_cache(model: PreTrainedModel) -> DynamicCache | None:
    """An empty KV cache for a batch's prefixes, or None where prefixes cannot be shared.

    A row's padding sits between its prefix and its own tokens, so every layer must keep every
    position: a sliding window would count the padding as context, and a recurrent state would
    take it in. A model whose generation config asks for its own cache type (static, ...) must
    get that from generate().
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    own_cache = getattr(model.generation_config, "cache_implementation", None) is not None
    if own_cache or getattr(model, "_is_stateful", False):
        return None
    cache = DynamicCache(config=model.config)
    return cache if all(type(layer) is DynamicLayer for layer in cache.layers) else None


def _batch_inputs(model: PreTrainedModel, rows: Sequence[Sequence[int]], pad_token_id: int,
                  sharing: PrefixSharing = "branches") -> dict:
    """generate() inputs for one batch, each prefix of its prefix_plan computed once.

    Prompts share the template's opening, so the prefixes run through the model once, as a
    batch of their own, and each row gets its prefix's KV cache (`ift bench --levers`:
    "shared-prefix KV cache"). A row's padding goes between its prefix and its own tokens,
    with the attention mask off on it; generate() numbers positions by the mask, so every
    real token has the position it has in the plain left-padded batch.
    """
    cache = _prefix_cache(model)
    plan = prefix_plan(rows, sharing if cache is not None else "none")
    row_prefixes, prefix_width, own_width = _layout(rows, plan)
    width = prefix_width + own_width
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (row, prefix) in enumerate(zip(rows, row_prefixes)):
        own = row[len(prefix):]
        input_ids[r, :len(prefix)] = torch.tensor(prefix, dtype=torch.long)
        input_ids[r, width - len(own):] = torch.tensor(own, dtype=torch.long)
        attention_mask[r, :len(prefix)] = 1
        attention_mask[r, width - len(own):] = 1
    inputs = {"input_ids": input_ids.to(model.device), "attention_mask": attention_mask.to(model.device)}
    if plan.prefixes:
        # One row per prefix, right-padded to prefix_width (a prefix is never empty, so no row
        # is all padding): under causal attention no real token sees the padding, and the
        # rows' attention mask hides it from then on.
        first_rows = [plan.prefix_of_row.index(i) for i in range(len(plan.prefixes))]
        model(input_ids=inputs["input_ids"][first_rows, :prefix_width], cache=cache, use_cache=True,
              logits_to_keep=1)
        cache.batch_select_indices(torch.tensor(plan.prefix_of_row, device=model.device))
        inputs["cache"] = cache
    return inputs


def through_eos(tokens: Sequence[int], eos_token_id: int | None) -> list[int]:
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
    sharing: PrefixSharing = "branches",
) -> list[list[int]]:
    """Greedy continuations of `prompts`, in order: the generated token ids through EOS.

    Batched (by length, with an attention mask and each batch's prefixes computed once, by
    `sharing`: prefix_plan), stopping at EOS; `max_new_tokens` counts only generated tokens,
    and the prompt is cut off by token count, not characters.
    """
    model.eval()
    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"] if prompts else []
    generated: list[list[int]] = [[] for _ in prompts]
    batches = length_sorted_batches([len(ids) for ids in encoded], batch_size)
    with tqdm(total=len(prompts), desc=desc, unit="ex") as bar:
        for batch in batches:
            inputs = _batch_inputs(model, [encoded[i] for i in batch], tokenizer.pad_token_id, sharing)
            output = model.generate(**inputs, **generation_kwargs(tokenizer, max_new_tokens))
            for i, row in zip(batch, output[:, inputs["input_ids"].shape[1]:].tolist()):
                generated[i] = through_eos(row, tokenizer.eos_token_id)
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
    sharing: PrefixSharing = "branches",
) -> list[str]:
    """Greedy answers for `prompts`, in order (generate_token_ids, decoded)."""
    return decode_answers(tokenizer, generate_token_ids(
        model, tokenizer, prompts, max_new_tokens, batch_size, desc, sharing))
