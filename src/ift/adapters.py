"""LoRA through peft: the adapter settings, 4-bit base weights (QLoRA), and the merged tuned model.

The tuned model is always a plain model (save_pretrained, safetensors) that loads without
peft; with LoRA, it is the base model with the saved adapter merged in, and the adapter
itself sits beside it in `adapter/` for users who ship the small file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ift.config import LoraConfig
from ift.errors import UserError
from ift.modeling import load_model, save_model

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)
ADAPTER_DIR = "adapter"  # inside the tuned model's directory


def peft_config(cfg: LoraConfig) -> Any:
    """peft's LoraConfig from train.lora."""
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                          target_modules=cfg.target_modules, bias="none", task_type="CAUSAL_LM")


def trainable_summary(model: torch.nn.Module) -> str:
    """How many parameters train, of how many, as a share: for the log."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"training {trainable:,} of {total:,} parameters ({trainable / total:.2%})"


def four_bit_quantization() -> Any:
    """transformers' 4-bit (NF4) loading for QLoRA, or a UserError where it cannot run.

    bitsandbytes' 4-bit kernels are used on CUDA GPUs here; written for, not verified on, a GPU.
    """
    if not torch.cuda.is_available():
        raise UserError("train.lora.load_in_4bit=true needs a CUDA GPU (bitsandbytes' 4-bit weights), and "
                        "this machine has none: set train.lora.load_in_4bit=false to train LoRA on full weights")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise UserError("train.lora.load_in_4bit=true needs bitsandbytes: "
                        "pip install -c requirements.lock -e '.[qlora]'") from exc
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute,
                              bnb_4bit_use_double_quant=True)


def save_merged(adapter_model: Any, base_dir: Path, tokenizer: PreTrainedTokenizerBase, out_dir: Path,
                trust_remote_code: bool = False) -> PreTrainedModel:
    """Save the adapter to out_dir/adapter, then the base model with that saved adapter merged in.

    The merge reloads the base at full precision (a 4-bit base cannot be saved as a plain
    model) and starts from the saved adapter, so the shipped file is the one proven complete.
    """
    from peft import PeftModel

    adapter_model.save_pretrained(str(out_dir / ADAPTER_DIR), safe_serialization=True)
    base = load_model(base_dir, device=torch.device("cpu"), trust_remote_code=trust_remote_code)
    merged = PeftModel.from_pretrained(base, str(out_dir / ADAPTER_DIR)).merge_and_unload()
    save_model(merged, tokenizer, out_dir)
    return merged
