"""The finetuning run: TRL's SFTTrainer on prompt/answer pairs, loss on the answer only."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers.trainer_callback import ProgressCallback

from ift.config import TinyModelConfig, TrainConfig, bad_value
from ift.errors import UserError
from ift.io import read_json, write_json
from ift.modeling import IGNORE_INDEX, bf16_supported, encode_example, pick_device
from ift.packing import PackedRowPadding

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# Logged values that a rerun would not reproduce: timings; train_loss, the mean over the
# steps this process ran (after a resume, not the whole run); TRL's num_tokens counter,
# which restarts at zero on resume (it is not part of a checkpoint).
UNREPRODUCIBLE_LOG_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second",
                           "total_flos", "train_loss", "num_tokens")
# Training curves whose last logged values are averaged into metrics.json's "smoothed" section.
SMOOTHED_CURVES = ("loss", "grad_norm", "entropy", "mean_token_accuracy")
SMOOTHING_WINDOW = 5  # logged points: 50 optimizer steps at logging_steps=10


def encode_rows(
    rows: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase, max_length: int, source: str
) -> tuple[list[dict[str, list[int]]], int]:
    """Encode hydrated rows; return (those within max_length tokens, how many were longer).

    Raises a UserError when every row is too long, naming the longest and what to change.
    """
    encoded, lengths = [], []
    for row in rows:
        example = encode_example(row["input"], row["output"], tokenizer)
        lengths.append(len(example["input_ids"]))
        if lengths[-1] <= max_length:
            encoded.append(example)
    if rows and not encoded:
        raise UserError(
            f"{source}: all {len(rows)} examples are longer than train.max_length={max_length} tokens "
            f"(shortest: {min(lengths)}, longest: {max(lengths)}); raise train.max_length to at least "
            f"{min(lengths)} or shorten the data")
    return encoded, len(rows) - len(encoded)


def build_dataset(
    rows: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase, max_length: int, source: str
) -> tuple[Dataset, dict[str, int]]:
    """Tokenize hydrated rows; drop (and count) those longer than max_length."""
    from datasets import Dataset

    encoded, too_long = encode_rows(rows, tokenizer, max_length, source)
    if too_long:
        log.warning("%s: dropped %d of %d examples longer than train.max_length=%d tokens",
                    source, too_long, len(rows), max_length)
    stats = {"examples": len(encoded), "dropped_too_long": too_long,
             "tokens": sum(len(e["input_ids"]) for e in encoded),
             "answer_tokens": sum(sum(e["completion_mask"]) for e in encoded)}
    return Dataset.from_list(encoded), stats


def check_trainer_choices(cfg: TrainConfig, source: str) -> None:
    """The train.* values that name a transformers choice, against transformers' own lists.

    Checked when the train stage starts rather than with the other keys (ift.config), which
    stay free of transformers' slow import: otherwise a typo fails deep inside the Trainer
    without the key's name, or, for train_sampling_strategy, falls back to random batches.
    """
    import dataclasses

    from transformers import TrainingArguments
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    strategies = next(f for f in dataclasses.fields(TrainingArguments)
                      if f.name == "train_sampling_strategy").metadata["choices"]
    for key, value, allowed in (("optim", cfg.optim, [o.value for o in OptimizerNames]),
                                ("lr_scheduler_type", cfg.lr_scheduler_type, [s.value for s in SchedulerType]),
                                ("train_sampling_strategy", cfg.train_sampling_strategy, strategies)):
        if value not in allowed:
            raise bad_value(source, f"train.{key}", value, f"must be one of {', '.join(allowed)}")


def uses_bf16(cfg: TrainConfig) -> bool:
    """Whether training runs under bf16 autocast (train.bf16; null: where the device has it natively)."""
    return bf16_supported(pick_device()) if cfg.bf16 is None else cfg.bf16


def compute_dtype(cfg: TrainConfig) -> str:
    """The training's compute dtype, as the environment record names it."""
    return "bfloat16 autocast" if uses_bf16(cfg) else "float32"


def sft_config(cfg: TrainConfig, seed: int, output_dir: Path, num_examples: int) -> Any:
    """TRL SFTConfig from our train section (TRL takes warmup_steps, not warmup_ratio)."""
    from trl import SFTConfig

    device = pick_device()
    use_bf16 = uses_bf16(cfg)
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
        # Recomputing activations only saves memory, which small models do not need
        # (TRL turns it on by default).
        activation_checkpointing=False,
        logging_steps=cfg.logging_steps,
        save_strategy="steps" if cfg.save_steps > 0 else "no",
        save_steps=cfg.save_steps or 500,  # (unused when save_strategy="no")
        save_total_limit=2,  # the last complete checkpoint survives a kill during the next save
        report_to="none",
        disable_tqdm=False,
        dataloader_num_workers=0,
    )


class ReadableProgressCallback(ProgressCallback):
    """transformers' training bar, labelled `desc`, with each log as one line instead of a dict."""

    def __init__(self, desc: str):
        super().__init__()
        self.desc = desc

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if self.training_bar is not None:
            self.training_bar.set_description(self.desc)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None:
            shown = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                              for k, v in (logs or {}).items() if k not in ("total_flos", "epoch"))
            self.training_bar.write(f"{self.desc} step {state.global_step}/{state.max_steps}: {shown}")


def dvclive_callback(live_dir: Path, resume: bool = False) -> Any:
    """The transformers DVCLive callback, logging at the trainer's step, without timings.

    Timings (train_runtime, samples/s) differ from run to run and train_loss depends on
    where a run was resumed, so they would make the committed training metrics
    unreproducible; TrainingArguments are not logged because params.yaml records our settings.
    """
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    class ReproducibleDVCLiveCallback(DVCLiveCallback):
        def setup(self, args, state, model):
            self._initialized = True

        def on_log(self, args, state, control, model=None, logs=None, **kwargs):
            logs = {k: v for k, v in (logs or {}).items() if k not in UNREPRODUCIBLE_LOG_KEYS}
            self.live.step = state.global_step
            super().on_log(args, state, control, model=model, logs=logs, **kwargs)

    return ReproducibleDVCLiveCallback(
        live=Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None, resume=resume))


def _sft_trainer_class() -> type:
    """TRL's SFTTrainer with a loss that runs the LM head only at labelled positions, plainly.

    Written by hand because TRL's own way of doing it (its tiled "fused LM head", made for
    GPUs) dominated every training step on a CPU here: `ift bench --levers` measures it
    (reports/bench.md, "Levers"). The computation is the same (logits only where the next token has a
    label, summed negative log-likelihood divided by the number of labelled tokens in the
    accumulated batch), as are the logged entropy and token accuracy. tests/test_answer_loss.py
    checks the loss against the model's own and the entropy against the full logits;
    tests/test_packing.py checks packed batches against padded ones.
    """
    import torch
    import torch.nn.functional as F
    from trl import SFTTrainer

    class AnswerOnlyHeadSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            mode = "train" if model.training else "eval"
            labels = inputs["labels"][:, 1:]
            model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
            # accelerate applies mixed precision by wrapping model.forward, which this bypasses.
            with self.accelerator.autocast():
                hidden = model.base_model(**model_inputs, use_cache=False).last_hidden_state[:, :-1]
                labelled = labels != IGNORE_INDEX
                logits = model.get_output_embeddings()(hidden[labelled]).float()
            targets = labels[labelled]
            count = labelled.sum() if num_items_in_batch is None else num_items_in_batch
            # cross_entropy is nll_loss(log_softmax): computed apart, the log-probabilities also
            # serve the logged entropy, and the vocabulary-wide softmax runs once, not twice.
            log_probs = logits.log_softmax(-1)
            loss = F.nll_loss(log_probs, targets, reduction="sum") / torch.as_tensor(count).clamp(min=1)
            with torch.no_grad():
                n = max(int(labelled.sum()), 1)
                self._metrics[mode]["entropy"].append(float(-(log_probs.exp() * log_probs).sum(-1).sum()) / n)
                self._metrics[mode]["mean_token_accuracy"].append(float((logits.argmax(-1) == targets).sum()) / n)
            return (loss, None) if return_outputs else loss

    return AnswerOnlyHeadSFTTrainer


def make_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    cfg: TrainConfig,
    seed: int,
    work_dir: Path,
    callbacks: list | None = None,
    desc: str = "training",
) -> Any:
    """The pipeline's TRL SFTTrainer (also what `ift bench` times); `desc` labels its progress bar."""
    import torch
    from transformers import set_seed

    # Same inputs, same machine -> same weights: seeds everywhere, and on GPUs deterministic
    # kernels wherever torch has them (warn_only: some ops have none). Not on CPU: the CPU
    # kernels used here are deterministic already (two runs gave byte-identical weights with
    # or without the switch), and the switch made the default train stage much slower here.
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    set_seed(seed)
    import ift.attention  # noqa: F401  (registers the packed_eager attention with transformers)

    model.set_attn_implementation(cfg.attn_implementation)  # a runtime choice: not saved with the model
    trainer = _sft_trainer_class()(
        model=model,
        args=sft_config(cfg, seed, work_dir, len(dataset)),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=callbacks or [],
    )
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
) -> dict[str, float]:
    """Train `model` in place; return the last logged loss and the step count."""
    trainer = make_trainer(model, tokenizer, dataset, cfg, seed, work_dir, callbacks, desc)
    if resume_from is not None:
        _restore_weights(model, resume_from)
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"final_loss": losses[-1] if losses else float("nan"), "global_step": result.global_step}


def _restore_weights(model: PreTrainedModel, checkpoint: Path) -> None:
    """Load a checkpoint's weights into `model`, through from_pretrained's key mapping.

    transformers 5 saves GPT-NeoX's `lm_head.weight` as `embed_out.weight`, and the
    Trainer's own resume (a non-strict load_state_dict) silently skips it, so a resumed run
    would continue with the base model's output layer. from_pretrained maps the names.
    """
    from transformers import AutoModelForCausalLM

    dtype = next(model.parameters()).dtype
    restored = AutoModelForCausalLM.from_pretrained(str(checkpoint), use_safetensors=True, dtype=dtype)
    model.load_state_dict(restored.state_dict(), strict=True)  # strict: every weight, or an error


def run_key(seed: int, cfg: TrainConfig, inputs: list[Path], code_dir: Path = Path(__file__).parent) -> str:
    """A short hash of everything the train stage's result depends on: params, input files,
    and code (every module of `code_dir`, this package: a checkpoint of other code is not
    resumed; the whole package, to be safe)."""
    digest = hashlib.sha256(json.dumps({"seed": seed, "train": vars(cfg)}, sort_keys=True, default=str).encode())
    for root in [*inputs, *sorted(code_dir.glob("*.py"))]:
        for path in sorted(p for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file()):
            digest.update(str(path.relative_to(root.parent)).encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def last_complete_checkpoint(work_dir: Path) -> Path | None:
    """The newest `checkpoint-N` that was completely written (None if there is none).

    The Trainer writes trainer_state.json last, so a checkpoint whose state file parses
    holds everything (weights, optimizer, scheduler, RNG states).
    """
    checkpoints = sorted(work_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for checkpoint in checkpoints:
        try:
            json.loads((checkpoint / "trainer_state.json").read_text())
            return checkpoint
        except (OSError, ValueError):
            log.warning("ignoring incomplete checkpoint %s", checkpoint)
    return None


def _truncate_curves(live_dir: Path, step: int) -> None:
    """Drop dvclive rows logged after `step` (the run died after its last checkpoint)."""
    for tsv in (live_dir / "plots").rglob("*.tsv"):
        header, *rows = tsv.read_text().splitlines()
        kept = [row for row in rows if int(float(row.split("\t")[0])) <= step]
        tsv.write_text("\n".join([header, *kept]) + "\n")


def finetune(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: Dataset,
    cfg: TrainConfig,
    seed: int,
    work_dir: Path,
    reports_dir: Path,
) -> dict[str, float]:
    """Instruction finetuning; training metrics and curves (dvclive) end up in `reports_dir`.

    Checkpoints go to `work_dir` every `cfg.save_steps` steps. If `work_dir` holds a
    complete checkpoint (a killed run with the same inputs), training resumes from it.
    """
    live_dir = work_dir / "dvclive"
    checkpoint = last_complete_checkpoint(work_dir) if work_dir.exists() else None
    if checkpoint is not None:
        step = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
        log.info("resuming from checkpoint %s (step %d) of an interrupted run with the same inputs",
                 checkpoint, step)
        if live_dir.exists():
            _truncate_curves(live_dir, step)
    result = run_sft(model, tokenizer, train_dataset, cfg, seed, work_dir,
                     callbacks=[dvclive_callback(live_dir, resume=checkpoint is not None and live_dir.exists())],
                     resume_from=checkpoint)
    reports_dir.mkdir(parents=True, exist_ok=True)
    metrics = {**read_json(live_dir / "metrics.json"),
               "smoothed": smoothed_curves(live_dir / "plots" / "metrics")}
    write_json(reports_dir / "metrics.json", metrics)
    shutil.copytree(live_dir / "plots", reports_dir / "plots", dirs_exist_ok=True)
    return result


def smoothed_curves(curves_dir: Path, window: int = SMOOTHING_WINDOW) -> dict[str, float]:
    """The mean of the last `window` logged values of each noisy training curve.

    The last logged point alone moves with every batch; `ift verify` compares these means
    across environments instead.
    """
    smoothed: dict[str, float] = {"window": window}
    for name in SMOOTHED_CURVES:
        tsv = curves_dir / f"{name}.tsv"
        if tsv.exists():
            values = [float(line.split("\t")[1]) for line in tsv.read_text().splitlines()[1:] if line]
            smoothed[name] = sum(values[-window:]) / len(values[-window:]) if values else float("nan")
    return smoothed


def pretraining_config(arch: TinyModelConfig) -> TrainConfig:
    """The tiny base model's pretraining run (fetch): loss on every token, padded batches."""
    return TrainConfig(
        learning_rate=arch.pretrain_learning_rate,
        max_steps=arch.pretrain_steps,
        per_device_train_batch_size=arch.pretrain_batch_size,
        warmup_ratio=0.05,
        lr_scheduler_type="cosine",
        completion_only_loss=False,
        # Random batches: grouping by length would put one kind of document in each batch.
        train_sampling_strategy="random",
        # fp32, not bf16 autocast: bf16 rounding sent pretraining down another path on each CPU
        # type, and the base model's answer loss then moved by ~8 standard errors between
        # environments (reports/spread.json holds what fp32 leaves).
        bf16=False,
        # Padded batches: packed rows were no faster for pretraining's short documents.
        padding_free=False,
        attn_implementation="eager",  # faster than sdpa for this model on CPU (ift bench --levers)
        logging_steps=max(arch.pretrain_steps // 5, 1),
        save_steps=0,  # part of fetch, which is short: no checkpoints
    )


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
    cfg = pretraining_config(arch)
    return run_sft(model, tokenizer, dataset, cfg, seed, work_dir, desc="pretraining")
