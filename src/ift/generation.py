"""Batched greedy generation for the eval stages and `ift ask`: length-sorted batches, left
padding, the prompts' shared prefixes computed once, and the answer length fitted to the data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from ift.config import MAX_NEW_TOKENS_CAP

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

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


def prefix_plan(rows: Sequence[Sequence[int]], branches: bool = True) -> tuple[list[list[int]], list[int]]:
    """The prefixes a batch computes once, and which one each row continues.

    The rows' shared opening, or, where it computes fewer positions, one prefix per branch
    after it: the Alpaca templates with and without an input share only their first words,
    and each branch shares the rest of its template. Rows left alone in a branch continue
    the shared opening. `branches` off: the shared opening only. No prefix where the rows
    share nothing (a single row included).
    """
    shared = shared_prefix_length(rows)
    if not shared:  # (and so every prefix below has a token: no prefix row is all padding)
        return [], [0] * len(rows)
    one_prefix = ([list(rows[0][:shared])], [0] * len(rows))
    if not branches:
        return one_prefix
    branches: dict[int, list[int]] = {}
    for r, row in enumerate(rows):
        branches.setdefault(row[shared], []).append(r)
    prefixes: list[list[int]] = []
    of_row = [0] * len(rows)
    for members in branches.values():
        length = shared_prefix_length([rows[r] for r in members]) if len(members) > 1 else shared
        prefix = list(rows[members[0]][:length])
        if prefix not in prefixes:
            prefixes.append(prefix)
        for r in members:
            of_row[r] = prefixes.index(prefix)
    branched = (prefixes, of_row)
    return min(one_prefix, branched, key=lambda plan: prefill_positions(rows, plan))


def prefill_positions(rows: Sequence[Sequence[int]], plan: tuple[list[list[int]], list[int]]) -> int:
    """Token positions a batch's prefill computes under `plan`: its prefixes, padded to the
    longest, then every row's own tokens, padded to the longest."""
    prefixes, of_row = plan
    prefix_width = max((len(prefix) for prefix in prefixes), default=0)
    own_width = max(len(row) - (len(prefixes[i]) if prefixes else 0) for row, i in zip(rows, of_row))
    return len(prefixes) * prefix_width + len(rows) * own_width


def _batch_inputs(model: PreTrainedModel, rows: Sequence[Sequence[int]], pad_token_id: int,
                  share_prefix: bool = True, branch_prefixes: bool = True) -> dict:
    """generate() inputs for one batch, each prefix of prefix_plan computed once.

    Prompts share the template's opening, so the prefixes run through the model once, as a
    batch of their own, and each row gets its prefix's KV cache (`ift bench --levers`:
    "shared-prefix KV cache"). A row's padding goes between its prefix and its own tokens,
    with the attention mask off on it; generate() numbers positions by the mask, so every
    real token has the position it has in the plain left-padded batch.
    """
    from transformers import DynamicCache

    # A model whose generation config asks for its own cache type (static, sliding, ...)
    # must get it from generate(): no shared prefix then.
    share_prefix = share_prefix and getattr(model.generation_config, "cache_implementation", None) is None
    prefixes, of_row = prefix_plan(rows, branch_prefixes) if share_prefix else ([], [0] * len(rows))
    prefix_width = max((len(prefix) for prefix in prefixes), default=0)
    row_prefixes = [prefixes[i] if prefixes else [] for i in of_row]
    own = [row[len(prefix):] for row, prefix in zip(rows, row_prefixes)]
    width = prefix_width + max(len(tokens) for tokens in own)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (prefix, tokens) in enumerate(zip(row_prefixes, own)):
        input_ids[r, :len(prefix)] = torch.tensor(prefix, dtype=torch.long)
        input_ids[r, width - len(tokens):] = torch.tensor(tokens, dtype=torch.long)
        attention_mask[r, :len(prefix)] = 1
        attention_mask[r, width - len(tokens):] = 1
    inputs = {"input_ids": input_ids.to(model.device), "attention_mask": attention_mask.to(model.device)}
    if prefixes:
        # Each prefix as its first row holds it, padded on the right: under causal attention no
        # real token sees that padding, and the rows' attention mask hides it from then on.
        first_rows = [of_row.index(i) for i in range(len(prefixes))]
        cache = DynamicCache(config=model.config)
        model(input_ids=input_ids[first_rows, :prefix_width], cache=cache, use_cache=True, logits_to_keep=1)
        cache.batch_select_indices(torch.tensor(of_row, device=model.device))
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
    share_prefix: bool = True,
    branch_prefixes: bool = True,
) -> list[list[int]]:
    """Greedy continuations of `prompts`, in order: the generated token ids through EOS.

    Batched (by length, with an attention mask and, unless `share_prefix` is off, each
    batch's prefixes computed once: prefix_plan, with `branch_prefixes`), stopping at EOS;
    `max_new_tokens` counts only generated tokens, and the prompt is cut off by token count,
    not characters.
    """
    model.eval()
    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"] if prompts else []
    generated: list[list[int]] = [[] for _ in prompts]
    batches = length_sorted_batches([len(ids) for ids in encoded], batch_size)
    with tqdm(total=len(prompts), desc=desc, unit="ex") as bar:
        for batch in batches:
            inputs = _batch_inputs(model, [encoded[i] for i in batch], tokenizer.pad_token_id, share_prefix,
                                   branch_prefixes)
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
    share_prefix: bool = True,
    branch_prefixes: bool = True,
) -> list[str]:
    """Greedy answers for `prompts`, in order (generate_token_ids, decoded)."""
    return decode_answers(tokenizer, generate_token_ids(
        model, tokenizer, prompts, max_new_tokens, batch_size, desc, share_prefix, branch_prefixes))
