"""Models and tokenizers: the tiny offline model, pretrained ones (Hub ids, local dirs),
pad/EOS rules, devices and dtypes."""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ift.config import ModelConfig, TinyModelConfig, as_dict, looks_like_a_path
from ift.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# Pythia's special tokens: id 0 is BOS/EOS/UNK, id 1 is a real padding entry.
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|padding|>"
# Added only when a tokenizer has no padding entry of its own (never EOS: see ensure_pad_token).
ADDED_PAD_TOKEN = "<|pad|>"
TINY_NAME = "tiny"
IGNORE_INDEX = -100  # the label value cross-entropy skips: prompt tokens and padding


def is_tiny(name_or_path: str) -> bool:
    return name_or_path == TINY_NAME


def pick_device() -> torch.device:
    """The GPU when there is one (CUDA, or Apple's MPS), else the CPU.

    GPU paths are written for, but not verified on, the machines this project is tested on.
    """
    if torch.cuda.is_available():
        return torch.device("cuda")
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


def build_tiny_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerBase:
    """Train a byte-level BPE tokenizer with Pythia's special tokens (EOS id 0, pad id 1)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=2048,
    )


def build_tiny_model(
    arch: TinyModelConfig, tokenizer: PreTrainedTokenizerBase, seed: int
) -> PreTrainedModel:
    """A randomly initialised GPT-NeoX (the Pythia architecture) sized by `arch`."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    config = GPTNeoXConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch.hidden_size,
        num_hidden_layers=arch.num_hidden_layers,
        num_attention_heads=arch.num_attention_heads,
        intermediate_size=arch.intermediate_size,
        max_position_embeddings=arch.max_position_embeddings,
        rotary_pct=arch.rotary_pct,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,  # as in Pythia
    )
    return GPTNeoXForCausalLM(config)


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel | None) -> None:
    """Give the tokenizer a pad token distinct from EOS, and record pad/EOS in the model.

    Padding with EOS would mask EOS out of the loss and the model would never learn to
    stop. Pythia has a real `<|padding|>` entry; otherwise a pad token is added and the
    embeddings are resized.
    """
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        if PAD_TOKEN in tokenizer.get_vocab():
            tokenizer.pad_token = PAD_TOKEN
        else:
            tokenizer.add_special_tokens({"pad_token": ADDED_PAD_TOKEN})
            log.info("added pad token %s (id %d)", ADDED_PAD_TOKEN, tokenizer.pad_token_id)
    if model is None:
        return
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    for config in (model.config, model.generation_config):
        config.pad_token_id = tokenizer.pad_token_id
        config.eos_token_id = tokenizer.eos_token_id


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

    try:
        local = Path(cfg.name_or_path).expanduser()
    except RuntimeError:  # ~user with no such user: a path, and a missing one
        local = Path(cfg.name_or_path)
    if local.is_dir():
        source, revision, meta = str(local), None, {"name_or_path": str(local), "local": True}
    elif looks_like_a_path(cfg.name_or_path) or local.exists():
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


def load_model(path: str | Path, device: torch.device | None = None,
               trust_remote_code: bool = False) -> PreTrainedModel:
    """Load a causal LM saved by this pipeline, from safetensors only (never pickle)."""
    from transformers import AutoModelForCausalLM

    with custom_code_refused(str(path)), _no_loading_bar():
        model = AutoModelForCausalLM.from_pretrained(
            str(path), use_safetensors=True, dtype=torch.float32, trust_remote_code=trust_remote_code
        )
    return model.to(device or pick_device())


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


def encode_example(prompt: str, answer: str, tokenizer: PreTrainedTokenizerBase) -> dict[str, list[int]]:
    """Token ids of prompt + answer + EOS, and a mask that is 1 on the answer and EOS.

    Prompt and answer are tokenized separately, so the prompt tokens are exactly what the
    model sees at inference (no BPE merge across the boundary), and EOS is appended so the
    model learns to stop.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {
        "input_ids": prompt_ids + answer_ids,
        "completion_mask": [0] * len(prompt_ids) + [1] * len(answer_ids),
    }


def _training_texts(records: list[dict[str, str]]) -> Iterable[str]:
    """What the tiny tokenizer is trained on: the hydrated prompts and answers."""
    from ift.prompts import hydrate

    for record in records:
        row = hydrate(record)
        yield row["input"] + row["output"]


def fetch_base_model(
    cfg: ModelConfig, train_records: list[dict[str, str]], seed: int, work_dir: Path, corpus_seed: int | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict]:
    """Build (tiny) or download/load (Hub id, local dir) the base model; return it with metadata.

    `seed` draws the tiny model's initial weights and batch order, `corpus_seed` (default:
    `seed`) its pretraining corpus, and with it the tokenizer: data, not training.
    """
    if is_tiny(cfg.name_or_path):
        from ift.demo import pretraining_corpus
        from ift.training import pretrain

        arch = cfg.tiny
        assert arch is not None  # checked by ift.config
        documents = pretraining_corpus(arch.pretrain_steps * arch.pretrain_batch_size,
                                       seed if corpus_seed is None else corpus_seed)
        tokenizer = build_tiny_tokenizer(
            itertools.chain(_training_texts(train_records), documents), arch.vocab_size)
        model = build_tiny_model(arch, tokenizer, seed)
        result = pretrain(model, tokenizer, documents, arch, seed, work_dir)
        meta = {"name_or_path": TINY_NAME, "built_from": "ift.modeling.build_tiny_model",
                "architecture": as_dict(arch),
                "pretraining": {"corpus": "ift.demo.pretraining_corpus", "documents": len(documents),
                                "steps": result["global_step"], "final_loss": result["final_loss"]}}
    else:
        tokenizer, model, meta = load_pretrained(cfg)
    ensure_pad_token(tokenizer, model)
    meta.update(parameters=sum(p.numel() for p in model.parameters()),
                vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token)
    return model, tokenizer, meta
