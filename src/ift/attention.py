"""Attention for packed training rows on CPUs: each example attends to itself only, cheaply.

With `padding_free`, TRL packs a batch into one row and passes the examples' boundaries
(`cu_seq_lens_q`) to the attention. GPUs run that row with flash-attention's variable-length
kernels. PyTorch's CPU kernels have no variable-length form, so transformers' `eager` and
`sdpa` compute the whole row against a block-diagonal mask: the work grows with the square
of the row (all examples together), which made the tiny model's step several times slower
than padded batches (`ift bench --levers`). This implementation gathers each example of the
row into its own block, as long as the batch's longest example, and computes plain
(matmul + softmax) causal attention block by block, in one batched call.

Written by hand because neither PyTorch nor transformers has variable-length attention on
CPU. Registered with transformers' AttentionInterface under `PACKED_EAGER`, so it is chosen
like any other kernel (`train.attn_implementation`). Rows without a padding mask or KV cache
(training rows, packed or not) take this path; masked rows and generation go to
transformers' sdpa attention with its own mask. On GPUs, use flash_attention_2 instead (its
kernels are variable-length; this path reads the boundaries on the host in every layer).
Every train preset uses it on CPU (train.attn_implementation: null), its packed rows padded
to a multiple of 64 tokens by ift.packing.
tests/test_attention.py checks outputs and gradients against sdpa with a block-diagonal mask.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

PACKED_EAGER = "packed_eager"


def example_boundaries(rows: int, tokens: int, cu_seq_lens_q: torch.Tensor | None,
                       position_ids: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """Start offsets of the examples in a batch's rows laid end to end, then the total length.

    TRL's padding-free collator passes them (`cu_seq_lens_q`, for its one packed row);
    otherwise each row starts an example, and so does each position that does not follow
    the one before it (transformers' own test for packed rows, `find_packed_sequence_indices`).
    """
    if cu_seq_lens_q is not None and rows == 1:
        return cu_seq_lens_q.long()
    starts = torch.zeros(rows, tokens, dtype=torch.bool, device=device)
    starts[:, 0] = True
    if position_ids is not None:
        positions = position_ids.expand(rows, tokens)
        starts[:, 1:] |= positions[:, 1:] - positions[:, :-1] != 1
    return torch.cat([starts.flatten().nonzero().flatten(), torch.tensor([rows * tokens], device=device)])


def packed_eager_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    cu_seq_lens_q: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: query/key/value [batch, heads, tokens, head_dim] in,
    [batch, tokens, heads, head_dim] out.

    Without a mask and a KV cache (training rows, packed or not), causal attention within each
    example (example_boundaries); otherwise transformers' sdpa attention with its mask.
    """
    rows, heads, tokens, head_dim = query.shape
    if attention_mask is not None or key.shape[2] != tokens:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                      dropout=dropout, position_ids=position_ids, **kwargs)
    bounds = example_boundaries(rows, tokens, cu_seq_lens_q, position_ids, query.device)
    starts, lengths = bounds[:-1], bounds.diff()
    examples, longest = len(lengths), int(lengths.max())
    slot = torch.arange(longest, device=query.device)
    real = slot < lengths[:, None]  # [examples, longest]: which block slots hold a token
    # Each block's token indices in the rows laid end to end; slots past an example's end
    # repeat the last token, are masked out as keys and dropped as outputs: they change nothing.
    gather = (starts[:, None] + slot).clamp(max=rows * tokens - 1).flatten()
    allowed = torch.ones(longest, longest, dtype=torch.bool, device=query.device).tril() & real[:, None, :]

    def blocks(states: torch.Tensor) -> torch.Tensor:  # [rows, H, T, D] -> [examples, H, longest, D]
        flat = states.transpose(0, 1).reshape(heads, rows * tokens, head_dim)
        return flat.index_select(1, gather).view(heads, examples, longest, head_dim).transpose(0, 1)

    scale = head_dim ** -0.5 if scaling is None else scaling
    weights = torch.matmul(blocks(query * scale), blocks(key).transpose(2, 3))
    # In place: the matmul's backward needs its inputs, not its output, and a copy of the
    # [examples x heads x longest x longest] weights took as long as the fill itself.
    weights = weights.masked_fill_(~allowed[:, None], torch.finfo(weights.dtype).min).softmax(-1)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, blocks(value)).transpose(1, 2).reshape(examples * longest, heads, head_dim)
    return output.index_select(0, real.flatten().nonzero().flatten()).view(rows, tokens, heads, head_dim), None


def no_mask_for_training_rows(*args, attention_mask: torch.Tensor | None = None, q_length: int = 0,
                              kv_length: int = 0, **kwargs) -> torch.Tensor | None:
    """transformers' sdpa mask, except none for rows without padding or a KV cache: for those
    packed_eager_attention finds the examples itself, and building the block-diagonal mask of a
    packed row (its whole length squared) is wasted work."""
    if attention_mask is None and q_length == kv_length:
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, q_length=q_length, kv_length=kv_length, **kwargs)


AttentionInterface.register(PACKED_EAGER, packed_eager_attention)
AttentionMaskInterface.register(PACKED_EAGER, no_mask_for_training_rows)
