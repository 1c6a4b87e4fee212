"""The finetuning run: TRL's SFTTrainer on prompt/answer pairs, loss on the answer only."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ift.config import TinyModelConfig, TrainConfig
from ift.errors import UserError
from ift.modeling import bf16_supported, encode_example, pick_device

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# Trainer logs these at the end of a run; they are timings, not reproducible metrics.
TIMING_LOG_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second",
                   "total_flos")


def build_dataset(
    rows: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase, max_length: int, source: str
) -> tuple[Dataset, dict[str, int]]:
    """Tokenize hydrated rows; drop (and count) those longer than max_length."""
    from datasets import Dataset

    encoded, too_long = [], 0
    for row in rows:
        example = encode_example(row["input"], row["output"], tokenizer)
        if len(example["input_ids"]) > max_length:
            too_long += 1
            continue
        encoded.append(example)
    if not encoded:
        longest = max(len(encode_example(r["input"], r["output"], tokenizer)["input_ids"]) for r in rows) if rows else 0
        raise UserError(
            f"{source}: all {len(rows)} examples are longer than train.max_length={max_length} tokens "
            f"(longest: {longest}); raise train.max_length or shorten the data")
    if too_long:
        log.warning("%s: dropped %d of %d examples longer than train.max_length=%d tokens",
                    source, too_long, len(rows), max_length)
    stats = {"examples": len(encoded), "dropped_too_long": too_long,
             "tokens": sum(len(e["input_ids"]) for e in encoded),
             "answer_tokens": sum(sum(e["completion_mask"]) for e in encoded)}
    return Dataset.from_list(encoded), stats


def sft_config(cfg: TrainConfig, seed: int, output_dir: Path, num_examples: int) -> Any:
    """TRL SFTConfig from our train section (TRL takes warmup_steps, not warmup_ratio)."""
    from trl import SFTConfig

    device = pick_device()
    use_bf16 = bf16_supported(device) if cfg.bf16 is None else cfg.bf16
    examples_per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    steps_per_epoch = math.ceil(num_examples / examples_per_step)
    total_steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(steps_per_epoch * cfg.num_train_epochs)
    return SFTConfig(
        output_dir=str(output_dir),
        seed=seed,
        data_seed=seed,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        warmup_steps=round(cfg.warmup_ratio * total_steps),
        lr_scheduler_type=cfg.lr_scheduler_type,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        max_length=cfg.max_length,
        completion_only_loss=cfg.completion_only_loss,
        bf16=use_bf16,
        use_cpu=device.type == "cpu",
        # Recomputing activations only saves memory, which small models do not need
        # (TRL turns it on by default).
        activation_checkpointing=False,
        logging_steps=cfg.logging_steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=False,
        dataloader_num_workers=0,
    )


def dvclive_callback(reports_dir: Path) -> Any:
    """The transformers DVCLive callback, logging at the trainer's step, without timings.

    Timings (train_runtime, samples/s) differ from run to run, so they would make the
    committed training metrics unreproducible; TrainingArguments are not logged because
    params.yaml already records our settings.
    """
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    class ReproducibleDVCLiveCallback(DVCLiveCallback):
        def setup(self, args, state, model):
            self._initialized = True

        def on_log(self, args, state, control, model=None, logs=None, **kwargs):
            logs = {k: v for k, v in (logs or {}).items() if k not in TIMING_LOG_KEYS}
            self.live.step = state.global_step
            super().on_log(args, state, control, model=model, logs=logs, **kwargs)

    return ReproducibleDVCLiveCallback(
        live=Live(str(reports_dir), dvcyaml=False, save_dvc_exp=False, report=None))


def run_sft(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    cfg: TrainConfig,
    seed: int,
    work_dir: Path,
    callbacks: list | None = None,
) -> dict[str, float]:
    """Train `model` in place with TRL's SFTTrainer; return the final loss and step count."""
    from transformers import set_seed
    from trl import SFTTrainer

    set_seed(seed)
    trainer = SFTTrainer(
        model=model,
        args=sft_config(cfg, seed, work_dir, len(dataset)),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=callbacks or [],
    )
    result = trainer.train()
    return {"train_loss": result.training_loss, "global_step": result.global_step}


def finetune(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: Dataset,
    cfg: TrainConfig,
    seed: int,
    work_dir: Path,
    reports_dir: Path,
) -> dict[str, float]:
    """Instruction finetuning, with training metrics and curves logged to `reports_dir`."""
    return run_sft(model, tokenizer, train_dataset, cfg, seed, work_dir,
                   callbacks=[dvclive_callback(reports_dir)])


def pretrain(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    documents: list[str],
    arch: TinyModelConfig,
    seed: int,
    work_dir: Path,
) -> dict[str, float]:
    """Language-model pretraining (loss on every token) of the tiny base model."""
    from datasets import Dataset

    eos = tokenizer.eos_token_id
    dataset = Dataset.from_list(
        [{"input_ids": ids + [eos]} for ids in tokenizer(documents, add_special_tokens=False)["input_ids"]])
    cfg = TrainConfig(
        learning_rate=arch.pretrain_learning_rate,
        max_steps=arch.pretrain_steps,
        per_device_train_batch_size=arch.pretrain_batch_size,
        warmup_ratio=0.05,
        lr_scheduler_type="cosine",
        completion_only_loss=False,
        logging_steps=max(arch.pretrain_steps // 5, 1),
    )
    return run_sft(model, tokenizer, dataset, cfg, seed, work_dir)
