"""Loading and saving models and tokenizers (Hub ids, local dirs, the tiny one), devices and dtypes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ift.config import TINY_NAME, ModelConfig, expanded_path, is_local_path
from ift.errors import UserError
from ift.processes import local_rank
from ift.tokenization import ensure_pad_token

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


def pick_device() -> torch.device:
    """The GPU when there is one (CUDA, or Apple's MPS), else the CPU.

    GPU paths are written for, but not verified on, the machines this project is tested on.
    """
    if torch.cuda.is_available():  # under torchrun, the GPU of this process
        return torch.device("cuda", local_rank())
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def bf16_supported(device: torch.device) -> bool:
    """True where bf16 matmuls are native: CUDA with bf16, or CPUs with AMX / AVX-512 BF16.

    On CPUs without those units bf16 is emulated and slower than fp32, so we stay in fp32.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    return False


@contextlib.contextmanager
def custom_code_refused(source: str) -> Iterator[None]:
    """transformers' refusal to run a model's own code, as a UserError saying how to allow it.

    transformers decides: a leftover `auto_map` for a model type it has built in is fine.
    """
    try:
        yield
    except ValueError as exc:
        if "trust_remote_code" not in str(exc):
            raise
        raise UserError(f"{source}: the model runs code of its own; if you trust it, set model.trust_remote_code=true "
                        "(`dvc exp run -S model.trust_remote_code=true`)") from exc


def load_pretrained(cfg: ModelConfig) -> tuple[PreTrainedTokenizerBase, PreTrainedModel, dict]:
    """Load a Hub id (pinned to the commit its revision resolves to) or a local directory.

    Weights load from safetensors only; remote code runs only with
    model.trust_remote_code=true.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ift.hub import hub_errors, resolve_revision

    local = expanded_path(cfg.name_or_path)
    if local.is_dir():
        source, revision, meta = str(local), None, {"name_or_path": str(local), "local": True}
    elif is_local_path(cfg.name_or_path):
        what = "is a file, not a model directory" if local.exists() else "does not exist"
        raise UserError(f"model.name_or_path={cfg.name_or_path}: {local.resolve()} {what}; give the directory "
                        "a model was saved to with save_pretrained, or a Hub id such as EleutherAI/pythia-70m")
    else:
        revision = resolve_revision(cfg.name_or_path, "model", cfg.revision)
        source = cfg.name_or_path
        meta = {"name_or_path": source, "revision": cfg.revision, "resolved_revision": revision}
    kwargs = {"revision": revision, "trust_remote_code": cfg.trust_remote_code}
    with hub_errors("model", cfg.name_or_path), custom_code_refused(cfg.name_or_path):
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            source, use_safetensors=True, dtype=torch.float32, **kwargs)
    return tokenizer, model, meta


def load_tokenizer(path: str | Path, padding_side: str = "right",
                   trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load a tokenizer saved by this pipeline (fetch or train), offline."""
    from transformers import AutoTokenizer

    with custom_code_refused(str(path)):
        tokenizer = AutoTokenizer.from_pretrained(str(path), padding_side=padding_side,
                                                  trust_remote_code=trust_remote_code)
    ensure_pad_token(tokenizer, None)
    return tokenizer


def load_model(path: str | Path, device: torch.device | None = None, trust_remote_code: bool = False,
               quantization_config: Any = None) -> PreTrainedModel:
    """Load a causal LM saved by this pipeline, from safetensors only (never pickle).

    `quantization_config` (QLoRA's 4-bit weights, ift.adapters) places the model itself.
    """
    from transformers import AutoModelForCausalLM

    device = device or pick_device()
    placement = {} if quantization_config is None else {"quantization_config": quantization_config,
                                                        "device_map": {"": device}}
    with custom_code_refused(str(path)), _no_loading_bar():
        model = AutoModelForCausalLM.from_pretrained(
            str(path), use_safetensors=True, dtype=torch.float32, trust_remote_code=trust_remote_code, **placement
        )
    return model if quantization_config is not None else model.to(device)


@contextlib.contextmanager
def _no_loading_bar() -> Iterator[None]:
    """transformers' "Loading weights" bar off: a local model of the pipeline loads in a moment."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> None:
    """Save model + tokenizer in the `save_pretrained` layout (safetensors)."""
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))


def fetch_base_model(
    cfg: ModelConfig, train_records: list[dict[str, str]], seed: int, work_dir: Path, corpus_seed: int | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict]:
    """Build (tiny) or download/load (Hub id, local dir) the base model; return it with metadata.

    `seed` draws the tiny model's initial weights and batch order, `corpus_seed` (default:
    `seed`) its pretraining corpus and tokenizer (ift.tiny).
    """
    if cfg.name_or_path == TINY_NAME:
        from ift.tiny import build_tiny_base  # here: only fetch builds it (stage deps follow imports)

        assert cfg.tiny is not None  # checked by ift.config
        model, tokenizer, meta = build_tiny_base(cfg.tiny, train_records, seed,
                                                 seed if corpus_seed is None else corpus_seed, work_dir)
    else:
        tokenizer, model, meta = load_pretrained(cfg)
    ensure_pad_token(tokenizer, model)
    meta.update(parameters=sum(p.numel() for p in model.parameters()),
                vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token)
    return model, tokenizer, meta
