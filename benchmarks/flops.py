"""The FLOPs a finetuning step must do, PaLM-style, counted from the examples it trains on
(and, in decode_flops, those of greedy decoding's steps).

Forward and backward together: 6 x non-embedding parameters x every token; 6 x LM-head
parameters x labelled tokens (the step needs logits only where the next token has a label);
and attention, 12 x layers x hidden size x the keys each token attends to (its position in
its own example, plus one: causal, and examples never attend to each other). Padding,
recomputation (gradient checkpointing) and logits nobody needs are not work the step must
do, so they count for nothing: an implementation that does them has a lower utilisation.
"""

from __future__ import annotations


def lm_head_parameters(model) -> int:
    return model.get_output_embeddings().weight.numel()


def non_embedding_parameters(model) -> int:
    """Parameters outside the input embedding and the output (LM head) matrix."""
    skip = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def required_flops(model, examples: list[tuple[int, int]]) -> dict[str, float]:
    """{part: FLOPs} of forward and backward over `examples`, each (tokens, labelled tokens)."""
    config = model.config
    tokens = sum(n for n, _ in examples)
    labelled = sum(k for _, k in examples)
    attended_keys = sum(n * (n + 1) // 2 for n, _ in examples)
    parts = {"non_embedding": 6 * non_embedding_parameters(model) * tokens,
             "lm_head": 6 * lm_head_parameters(model) * labelled,
             "attention": 12 * config.num_hidden_layers * config.hidden_size * attended_keys}
    return {**parts, "total": sum(parts.values())}


HOW_COUNTED = ("6 x non-embedding parameters x all tokens + 6 x LM-head parameters x labelled tokens "
               "+ 12 x layers x hidden x attended keys (causal, per example); padding and recomputation "
               "count for nothing")


def decode_flops(model, prompt_lengths: list[int], generated_lengths: list[int]) -> int:
    """Forward FLOPs of greedy decoding's steps alone, the prefill not counted: each generated
    token but the last runs through the model (2 x non-embedding parameters), each generated
    token needs its logits (2 x LM-head parameters), and each position a step runs attends to
    the keys up to it (4 x layers x hidden per key)."""
    config = model.config
    fed = sum(max(g - 1, 0) for g in generated_lengths)
    # Decode positions p .. p+g-2 of a row with a p-token prompt attend to p+1 .. p+g-1 keys.
    keys = sum((p + g) * (p + g - 1) // 2 - p * (p + 1) // 2 for p, g in zip(prompt_lengths, generated_lengths) if g)
    return (2 * non_embedding_parameters(model) * fed + 2 * lm_head_parameters(model) * sum(generated_lengths)
            + 4 * config.num_hidden_layers * config.hidden_size * keys)


DECODE_HOW_COUNTED = ("2 x non-embedding parameters x tokens fed back + 2 x LM-head parameters x tokens generated "
                      "+ 4 x layers x hidden x attended keys, the prompts' positions not counted")
