"""The pipeline's trainer: TRL's SFTTrainer with our loss, configured from the train section."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from transformers.trainer_callback import ProgressCallback
from trl import SFTTrainer

from ift.adapters import peft_config, trainable_summary
from ift.config import TrainConfig
from ift.modeling import bf16_supported, load_model, pick_device
from ift.packing import PackedRowPadding
from ift.processes import local_world_size, world_size
from ift.progress import ReadableProgressCallback
from ift.tokenization import IGNORE_INDEX

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


def uses_bf16(cfg: TrainConfig) -> bool:
    """Whether training runs under bf16 autocast (train.bf16; null: where the device has it natively)."""
    return bf16_supported(pick_device()) if cfg.bf16 is None else cfg.bf16


def attention_kernel(cfg: TrainConfig) -> str:
    """The training's attention (train.attn_implementation; null: ours, packed_eager, on CPU,
    where PyTorch has no variable-length kernel, and sdpa on GPUs, where packed_eager would read
    the examples' boundaries on the host in every layer)."""
    from ift.attention import PACKED_EAGER

    if cfg.attn_implementation is not None:
        return cfg.attn_implementation
    return PACKED_EAGER if pick_device().type == "cpu" else "sdpa"


def compute_dtype(cfg: TrainConfig) -> str:
    """The training's compute dtype, as the environment record names it."""
    return "bfloat16 autocast" if uses_bf16(cfg) else "float32"


def sft_config(cfg: TrainConfig, seed: int, output_dir: Path, num_examples: int) -> Any:
    """TRL SFTConfig from our train section (TRL takes warmup_steps, not warmup_ratio)."""
    from trl import SFTConfig

    device = pick_device()
    use_bf16 = uses_bf16(cfg)
    # As in transformers: the global batch counts every process (torchrun's WORLD_SIZE).
    examples_per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * world_size()
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
        # build_dataset drops examples longer than cfg.max_length (and counts them), so TRL has
        # nothing to truncate; it also refuses max_length together with padding_free.
        max_length=None,
        completion_only_loss=cfg.completion_only_loss,
        padding_free=cfg.padding_free,
        # Packed rows are padded by ift.packing instead (make_trainer): TRL pads them token by token.
        pad_to_multiple_of=None if cfg.padding_free else cfg.pad_to_multiple_of,
        optim=cfg.optim,
        train_sampling_strategy=cfg.train_sampling_strategy,
        bf16=use_bf16,
        use_cpu=device.type == "cpu",
        # Off unless asked for (TRL turns it on by default): it only saves memory, at a cost in time.
        activation_checkpointing=cfg.gradient_checkpointing,
        ddp_find_unused_parameters=False,  # every trained weight is used in every step (LoRA too)
        fsdp=cfg.fsdp or None,
        fsdp_config=dict(cfg.fsdp_config) or None,
        logging_steps=cfg.logging_steps,
        save_strategy="steps" if cfg.save_steps > 0 else "no",
        save_steps=cfg.save_steps or 500,  # (unused when save_strategy="no")
        save_total_limit=2,  # the last complete checkpoint survives a kill during the next save
        save_on_each_node=local_world_size() != world_size(),  # several machines: each resumes from its own
        report_to="none",
        disable_tqdm=False,
        dataloader_num_workers=0,
    )


def loss_terms(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The loss's vocabulary-wide work, in one function for torch.compile (train.compile_loss):
    the summed NLL of the labelled tokens and, without gradients, their summed entropy and
    count of correct argmax predictions (the logged metrics)."""
    # cross_entropy is nll_loss(log_softmax): computed apart, the log-probabilities also serve
    # the logged entropy, and the vocabulary-wide softmax runs once, not twice.
    logits = logits.float()
    log_probs = logits.log_softmax(-1)
    nll = F.nll_loss(log_probs, targets, reduction="sum")
    with torch.no_grad():
        entropy = -(log_probs.exp() * log_probs).sum(-1).sum()
        correct = (logits.argmax(-1) == targets).sum()
    return nll, entropy, correct


class AnswerOnlyHeadSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer with a loss that runs the LM head only at labelled positions, plainly.

    Written by hand because TRL's own way (its tiled "fused LM head", made for GPUs) dominated
    every training step on CPU (`ift bench --levers`). The computation is the same: logits only
    where the next token has a label, the summed negative log-likelihood over the number of
    labelled tokens in the accumulated batch, and the same logged entropy and token accuracy
    (tests/test_answer_loss.py, tests/test_packing.py).
    """

    loss_terms = staticmethod(loss_terms)  # make_trainer swaps in a compiled one (train.compile_loss)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """On resume, a whole model's weights through from_pretrained's key mapping.

        transformers 5 saves GPT-NeoX's `lm_head.weight` as `embed_out.weight`, and the
        Trainer's own load (a non-strict load_state_dict) skips it with a warning, so a resumed
        run would continue with the base model's output layer. Adapters and models in shards
        (FSDP) load the Trainer's own way.
        """
        from peft import PeftModel

        if model is not None or self.is_fsdp_enabled or isinstance(self.model, PeftModel):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        _restore_weights(self.model, Path(resume_from_checkpoint))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if model.training else "eval"
        labels = inputs["labels"][:, 1:]
        labelled = labels != IGNORE_INDEX
        model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        # Through the model's own forward (as DDP and peft need), with transformers' logits_to_keep
        # as a mask: the LM head runs where the next token is labelled, and nowhere else.
        keep = F.pad(labelled, (0, 1), value=False)
        # Under bf16, accelerate wraps the model's forward to cast every output to fp32: for the
        # logits, a [labelled tokens x vocabulary] copy and its cast back in backward. Unwrapped
        # (once: it changes the model in place), loss_terms casts them itself, inside its
        # compiled graph with train.compile_loss.
        self.accelerator.unwrap_model(model, keep_fp32_wrapper=False)
        with self.accelerator.autocast():
            logits = model(**model_inputs, use_cache=False, logits_to_keep=keep).logits
        count = labelled.sum() if num_items_in_batch is None else num_items_in_batch
        nll, entropy, correct = self.loss_terms(logits, labels[labelled])
        loss = nll / torch.as_tensor(count).clamp(min=1)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # num_items_in_batch counts every process's tokens and DDP averages the gradients over
            # processes: scale back, as transformers' own compute_loss does.
            loss = loss * self.accelerator.num_processes
        n = max(int(labelled.sum()), 1)
        self._metrics[mode]["entropy"].append(float(entropy) / n)
        self._metrics[mode]["mean_token_accuracy"].append(float(correct) / n)
        return (loss, None) if return_outputs else loss


def make_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    cfg: TrainConfig,
    seed: int,
    work_dir: Path,
    callbacks: list | None = None,
    desc: str = "training",
    trainer_class: type[SFTTrainer] | None = None,
) -> Any:
    """The pipeline's TRL SFTTrainer (also what `ift bench` times); `desc` labels its progress bar.

    `trainer_class` replaces ours (AnswerOnlyHeadSFTTrainer), for the benchmark to time TRL's own.
    """
    from transformers import set_seed

    # Same inputs, same machine -> same weights: seeds everywhere, and on GPUs deterministic
    # kernels wherever torch has them (warn_only: some ops have none). The CPU kernels are
    # deterministic already, and the switch only slows them down.
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    set_seed(seed)
    model.set_attn_implementation(attention_kernel(cfg))  # a runtime choice: not saved with the model
    trainer = (trainer_class or AnswerOnlyHeadSFTTrainer)(
        model=model,
        args=sft_config(cfg, seed, work_dir, len(dataset)),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=callbacks or [],
        peft_config=peft_config(cfg.lora) if cfg.lora.enabled else None,  # TRL wraps the model with peft
    )
    if trainer.is_world_process_zero():
        log.info("%s%s", trainable_summary(trainer.model), " (LoRA adapters)" if cfg.lora.enabled else "")
    if cfg.compile_loss:
        # Dynamic shapes: the count of labelled tokens changes every step, and one compiled graph
        # serves them all. Inductor needs a C++ compiler on CPU (a Triton one on GPUs: not verified here).
        trainer.loss_terms = torch.compile(type(trainer).loss_terms, dynamic=True)
    if cfg.padding_free and cfg.pad_to_multiple_of:
        trainer.data_collator = PackedRowPadding(trainer.data_collator, cfg.pad_to_multiple_of)
    if trainer.pop_callback(ProgressCallback) is not None:  # (none when tqdm is off)
        trainer.add_callback(ReadableProgressCallback(desc))
    return trainer


def run_sft(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    cfg: TrainConfig,
    seed: int,
    work_dir: Path,
    callbacks: list | None = None,
    resume_from: Path | None = None,
    desc: str = "finetuning",
) -> tuple[Any, dict[str, float]]:
    """Train `model` in place; return the trained model (with LoRA: its peft model), the last
    logged loss and the step count."""
    trainer = make_trainer(model, tokenizer, dataset, cfg, seed, work_dir, callbacks, desc)
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    summary = {"final_loss": losses[-1] if losses else float("nan"), "global_step": result.global_step}
    if not trainer.is_fsdp_enabled:
        return trainer.model, summary
    # FSDP holds the weights in shards: gathering them is collective, so every process saves
    # (rank 0 writes) and rank 0 reloads the whole model. Written for GPUs, not verified here.
    trainer.save_model(str(work_dir / "fsdp-final"))
    return (load_model(work_dir / "fsdp-final") if trainer.is_world_process_zero() else None), summary


def _restore_weights(model: PreTrainedModel, checkpoint: Path) -> None:
    """Load a checkpoint's weights into `model`, through from_pretrained's key mapping."""
    from transformers import AutoModelForCausalLM

    dtype = next(model.parameters()).dtype
    restored = AutoModelForCausalLM.from_pretrained(str(checkpoint), use_safetensors=True, dtype=dtype)
    model.load_state_dict(restored.state_dict(), strict=True)  # strict: every weight, or an error
