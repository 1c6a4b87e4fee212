"""ift.attention: packed rows attend per example, exactly like a block-diagonal causal mask."""

import torch

from ift.attention import PACKED_EAGER, packed_eager_attention
from ift.config import ATTN_IMPLEMENTATIONS

LENGTHS = [3, 7, 1, 5]


def _qkv(seed: int = 0, heads: int = 2, head_dim: int = 4):
    generator = torch.Generator().manual_seed(seed)
    shape = (1, heads, sum(LENGTHS), head_dim)
    return [(3 * torch.randn(shape, generator=generator)).requires_grad_() for _ in range(3)]


def _cu_seq_lens() -> torch.Tensor:
    """The examples' start offsets and the total length, as TRL's padding-free collator passes them."""
    return torch.tensor([0, *torch.tensor(LENGTHS).cumsum(0).tolist()], dtype=torch.int32)


def _block_diagonal_causal() -> torch.Tensor:
    example = torch.repeat_interleave(torch.arange(len(LENGTHS)), torch.tensor(LENGTHS))
    tokens = len(example)
    return (example[:, None] == example[None, :]) & torch.ones(tokens, tokens, dtype=torch.bool).tril()


def test_packed_rows_match_a_block_diagonal_mask_in_outputs_and_gradients():
    module = torch.nn.Module().eval()
    q, k, v = _qkv()
    cu_seq_lens = _cu_seq_lens()
    ours, _ = packed_eager_attention(module, q, k, v, None, scaling=0.5, cu_seq_lens_q=cu_seq_lens)
    reference = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=_block_diagonal_causal(), scale=0.5).transpose(1, 2)
    assert ours.shape == reference.shape == (1, sum(LENGTHS), 2, 4)
    torch.testing.assert_close(ours, reference)
    upstream = torch.randn(ours.shape, generator=torch.Generator().manual_seed(1))
    ours_grads = torch.autograd.grad((ours * upstream).sum(), (q, k, v))
    reference_grads = torch.autograd.grad((reference * upstream).sum(), (q, k, v))
    for mine, theirs in zip(ours_grads, reference_grads):
        torch.testing.assert_close(mine, theirs)


def test_the_check_can_fail_one_causal_row_differs():
    """Ignoring the boundaries (one causal row) must not pass the comparison above."""
    module = torch.nn.Module().eval()
    q, k, v = _qkv()
    whole_row = torch.tensor([0, sum(LENGTHS)], dtype=torch.int32)
    ours, _ = packed_eager_attention(module, q, k, v, None, scaling=0.5, cu_seq_lens_q=whole_row)
    reference = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=_block_diagonal_causal(), scale=0.5).transpose(1, 2)
    assert not torch.allclose(ours, reference, atol=1e-3)


def test_boundaries_from_position_ids_match_the_collators():
    q, k, v = _qkv()
    cu_seq_lens = _cu_seq_lens()
    position_ids = torch.cat([torch.arange(n) for n in LENGTHS])[None]
    module = torch.nn.Module().eval()
    from_collator, _ = packed_eager_attention(module, q, k, v, None, cu_seq_lens_q=cu_seq_lens)
    from_positions, _ = packed_eager_attention(module, q, k, v, None, position_ids=position_ids)
    assert torch.equal(from_collator, from_positions)


def test_unpacked_rows_without_a_mask_are_plain_causal():
    module = torch.nn.Module().eval()
    q, k, v = (x.detach().view(2, 2, 8, 4) for x in _qkv())  # 16 tokens as 2 rows of 8
    ours, _ = packed_eager_attention(module, q, k, v, None, scaling=0.5)
    reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.5)
    torch.testing.assert_close(ours, reference.transpose(1, 2))


def test_masked_rows_and_kv_caches_go_to_sdpa():
    module = torch.nn.Module().eval()
    q, k, v = (x.detach() for x in _qkv())
    mask = _block_diagonal_causal()[None, None]
    ours, _ = packed_eager_attention(module, q, k, v, mask, scaling=0.5)
    reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.5)
    torch.testing.assert_close(ours, reference.transpose(1, 2))
    last, _ = packed_eager_attention(module, q[:, :, -1:], k, v, mask[:, :, -1:], scaling=0.5)
    torch.testing.assert_close(last, reference.transpose(1, 2)[:, -1:])


def test_the_name_is_a_valid_train_setting():
    assert PACKED_EAGER in ATTN_IMPLEMENTATIONS
