"""What a user would run instead of our stages, written as the TRL and transformers docs show.

These are the other side of the benchmark's ratios: read them as a reviewer would. Nothing in
them is tuned for speed; where a setting is ours, it is one a user copies from our
configuration so that both sides do the same work (the same examples, batch and schedule).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ift.config import TrainConfig
from ift.generation import through_eos


def trl_sft_trainer(model, tokenizer, dataset, ours: TrainConfig, steps: int, work_dir: Path, callbacks: list):
    """A plain TRL SFTTrainer with SFTConfig's defaults for prompt-completion data.

    Taken from our configuration: the optimisation (per-device batch, accumulation, learning
    rate and its schedule, seed), so that the two see the same batches in the same order from
    the same initial weights; bf16 where the hardware has it, as a user sets it. Left to TRL:
    everything else, among it padding each batch to its longest example, the LM head over every
    position, gradient checkpointing (on by default in SFTConfig) and the AdamW implementation.
    """
    from trl import SFTConfig, SFTTrainer

    from ift.trainer import uses_bf16

    args = SFTConfig(
        output_dir=str(work_dir),
        per_device_train_batch_size=ours.per_device_train_batch_size,
        gradient_accumulation_steps=ours.gradient_accumulation_steps,
        learning_rate=ours.learning_rate,
        lr_scheduler_type=ours.lr_scheduler_type,
        warmup_steps=round(ours.warmup_ratio * steps),
        max_steps=steps,
        seed=0,
        bf16=uses_bf16(ours),
        use_cpu=not torch.cuda.is_available(),  # transformers refuses bf16 on a CPU-only machine without it
        # SFTConfig's default (None) picks this for {"prompt", "completion"} text; the benchmark's
        # examples come tokenized, which TRL cannot tell apart from plain language modelling.
        completion_only_loss=True,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
    )
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks)


def batched_generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[list[int]]:
    """Greedy answers with `generate()` in batches, left padding and the attention mask, as in
    transformers' docs for batched generation: the generated token ids through EOS."""
    tokenizer.padding_side = "left"
    answers = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True)
        with torch.no_grad():
            output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
        answers += [through_eos(row, tokenizer.eos_token_id)
                    for row in output[:, batch["input_ids"].shape[1]:].tolist()]
    return answers
