"""The finetuning run of the train stage: checkpoints and resume, dvclive metrics and curves,
and the key that ties a run's checkpoints to its inputs."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dvclive import Live
from transformers.integrations import DVCLiveCallback

from ift.config import TrainConfig
from ift.io import read_json, write_json
from ift.processes import world_size
from ift.trainer import run_sft

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


class ReproducibleDVCLiveCallback(DVCLiveCallback):
    """The transformers DVCLive callback, logging at the trainer's step, without timings.

    Timings (train_runtime, samples/s) differ from run to run and train_loss depends on
    where a run was resumed, so they would make the committed training metrics
    unreproducible; TrainingArguments are not logged because params.yaml records our settings.
    """

    def setup(self, args, state, model):
        self._initialized = True

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        logs = {k: v for k, v in (logs or {}).items() if k not in UNREPRODUCIBLE_LOG_KEYS}
        self.live.step = state.global_step
        super().on_log(args, state, control, model=model, logs=logs, **kwargs)


def dvclive_callback(live_dir: Path, resume: bool = False) -> ReproducibleDVCLiveCallback:
    """The callback that writes `live_dir`'s metrics.json and curves (resuming them after a kill)."""
    return ReproducibleDVCLiveCallback(
        live=Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None, resume=resume))


def imported_code() -> list[Path]:
    """The files of the ift modules this process has imported: the code a stage runs.

    dvc.yaml lists them among the stage's deps (tests/test_pipeline_deps.py), so a key over
    them changes when DVC would rerun the stage and not when an unrelated module changes.
    """
    return sorted({Path(module.__file__) for name, module in list(sys.modules.items())
                   if name.startswith("ift.") and getattr(module, "__file__", None)})


def run_key(seed: int, cfg: TrainConfig, inputs: list[Path], code: list[Path] | None = None) -> str:
    """A short hash of everything the train stage's result depends on: params, input files,
    and code (`code`, by default imported_code()). It keys the run's checkpoints (other code's
    are not resumed) and names the run in the model card."""
    digest = hashlib.sha256(json.dumps({"seed": seed, "train": vars(cfg)}, sort_keys=True, default=str).encode())
    for root in [*inputs, *(imported_code() if code is None else code)]:
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
    # Several processes each write their RNG state, unsynchronised with rank 0's trainer_state.json.
    rng_files = [f"rng_state_{rank}.pth" for rank in range(world_size())] if world_size() > 1 else []
    for checkpoint in checkpoints:
        try:
            json.loads((checkpoint / "trainer_state.json").read_text())
            if all((checkpoint / name).exists() for name in rng_files):
                return checkpoint
        except (OSError, ValueError):
            pass
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
    reports_dir: Path | None,
) -> tuple[Any, dict[str, float]]:
    """Instruction finetuning; return the trained model (with LoRA: the peft model) and a summary.

    Training metrics and curves (dvclive) end up in `reports_dir`; None: this process does
    not write them (a worker other than rank 0). Checkpoints go to `work_dir` every
    `cfg.save_steps` steps. If `work_dir` holds a complete checkpoint (a killed run with the
    same inputs), training resumes from it.
    """
    live_dir = work_dir / "dvclive"
    checkpoint = last_complete_checkpoint(work_dir) if work_dir.exists() else None
    if checkpoint is not None:
        step = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
        log.info("resuming from checkpoint %s (step %d) of an interrupted run with the same inputs",
                 checkpoint, step)
        if live_dir.exists() and reports_dir is not None:
            _truncate_curves(live_dir, step)
    callbacks = [] if reports_dir is None else [
        dvclive_callback(live_dir, resume=checkpoint is not None and live_dir.exists())]
    trained, result = run_sft(model, tokenizer, train_dataset, cfg, seed, work_dir, callbacks=callbacks,
                              resume_from=checkpoint)
    if reports_dir is None:
        return trained, result
    reports_dir.mkdir(parents=True, exist_ok=True)
    metrics = {**read_json(live_dir / "metrics.json"),
               "smoothed": smoothed_curves(live_dir / "plots" / "metrics")}
    write_json(reports_dir / "metrics.json", metrics)
    shutil.copytree(live_dir / "plots", reports_dir / "plots", dirs_exist_ok=True)
    return trained, result


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
