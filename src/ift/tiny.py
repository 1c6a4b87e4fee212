"""The offline base model (model=tiny): a small GPT-NeoX with a BPE tokenizer trained on the
data, briefly pretrained on ift.demo's synthetic corpus so that, like a real base model, it
continues text and copies from its context before it is finetuned."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ift.config import TINY_NAME, TinyModelConfig, as_dict
from ift.demo import pretraining_corpus
from ift.progress import ReadableProgressCallback
from ift.prompts import hydrate
from ift.tokenization import EOS_TOKEN, PAD_TOKEN

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# fp32, not bf16 autocast: bf16 sends pretraining down another path with each CPU's kernels,
# far beyond the test set's noise (README, Guarantees).
PRETRAINING_DTYPE = "float32"


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


def _training_texts(records: list[dict[str, str]]) -> Iterable[str]:
    """What the tiny tokenizer is trained on: the hydrated prompts and answers."""
    for record in records:
        row = hydrate(record)
        yield row["input"] + row["output"]


def pretrain(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, documents: list[str],
             arch: TinyModelConfig, seed: int, work_dir: Path) -> dict[str, float]:
    """Causal language modelling (loss on every token but padding), with transformers' Trainer.

    Padded batches of random documents; eager attention, the faster kernel for a model this
    small on CPU; no checkpoints (pretraining is part of fetch, which is short).
    """
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments, set_seed
    from transformers.trainer_callback import ProgressCallback

    eos = tokenizer.eos_token_id
    dataset = Dataset.from_list(
        [{"input_ids": ids + [eos]} for ids in tokenizer(documents, add_special_tokens=False)["input_ids"]])
    set_seed(seed)
    model.set_attn_implementation("eager")
    args = TrainingArguments(
        output_dir=str(work_dir), seed=seed, data_seed=seed, max_steps=arch.pretrain_steps,
        per_device_train_batch_size=arch.pretrain_batch_size, learning_rate=arch.pretrain_learning_rate,
        warmup_steps=math.ceil(0.05 * arch.pretrain_steps), lr_scheduler_type="cosine", bf16=False,
        use_cpu=not torch.cuda.is_available(), logging_steps=max(arch.pretrain_steps // 5, 1), save_strategy="no",
        report_to="none", disable_tqdm=False, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=dataset,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
    if trainer.pop_callback(ProgressCallback) is not None:  # (none when tqdm is off)
        trainer.add_callback(ReadableProgressCallback("pretraining"))
    result = trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"final_loss": losses[-1] if losses else float("nan"), "global_step": result.global_step}


def build_tiny_base(arch: TinyModelConfig, train_records: list[dict[str, str]], seed: int, corpus_seed: int,
                    work_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict]:
    """The tiny base model, pretrained, its tokenizer and metadata.

    `seed` draws the initial weights and batch order, `corpus_seed` the pretraining corpus, and
    with it the tokenizer: data, not training.
    """
    documents = pretraining_corpus(arch.pretrain_steps * arch.pretrain_batch_size, corpus_seed)
    tokenizer = build_tiny_tokenizer(itertools.chain(_training_texts(train_records), documents), arch.vocab_size)
    model = build_tiny_model(arch, tokenizer, seed)
    result = pretrain(model, tokenizer, documents, arch, seed, work_dir)
    meta = {"name_or_path": TINY_NAME, "built_from": "ift.tiny.build_tiny_model", "architecture": as_dict(arch),
            "pretraining": {"corpus": "ift.demo.pretraining_corpus", "documents": len(documents),
                            "steps": result["global_step"], "final_loss": result["final_loss"]}}
    return model, tokenizer, meta
