"""Helpers the tests share (fixtures live in conftest.py): paths, small data, a train step,
a Pythia-like stand-in model, and running commands in a copy of the repository."""

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ift.verify import commit_all

ROOT = Path(__file__).resolve().parents[1]

TEXTS = [
    "Below is an instruction that describes a task. ### Instruction: ### Input: ### Response:",
    "Reverse the order of the words. cat dog red fig kiwi pear apple",
    "What is 2 plus one? 3 4 5 6 7 8 9 10 {braces} é ü 日本",
] * 20


# Prompt/answer rows of differing lengths, for train-step tests.
TRAIN_ROWS = [{"input": f"### Instruction:\n{'word ' * n}\n\n### Response:", "output": "cat dog" * (n % 3 + 1)}
              for n in (3, 11, 6, 19, 1, 8)]


def sharpen(model) -> None:
    """Scale a random model's weights so it predicts far from uniformly (attention too): a wrong
    mask or a wrong loss then moves the numbers by far more than a test's tolerance."""
    import torch

    with torch.no_grad():
        for weight in model.parameters():
            weight.mul_(8)


def train_batch(model, tokenizer, padding_free: bool, work_dir: Path, attn_implementation: str = "sdpa",
                trainer_class=None, **train_overrides):
    """The pipeline's trainer (or `trainer_class`) over TRAIN_ROWS and all of them collated as one
    batch; model in eval mode. Rows are padded no further than needed unless `pad_to_multiple_of` is given."""
    from ift.config import TrainConfig
    from ift.tokenization import build_dataset
    from ift.trainer import make_trainer

    dataset, _ = build_dataset(TRAIN_ROWS, tokenizer, max_length=256, source="rows")
    cfg = TrainConfig(per_device_train_batch_size=len(TRAIN_ROWS), padding_free=padding_free, max_steps=1,
                      attn_implementation=attn_implementation,
                      **{"pad_to_multiple_of": None, "bf16": False, **train_overrides})
    trainer = make_trainer(model, tokenizer, dataset, cfg, 0, work_dir, trainer_class=trainer_class)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(TRAIN_ROWS))])
    model.eval()
    return trainer, batch


def project_files() -> list[str]:
    """Tracked files plus new, not ignored ones: the working tree as a fresh clone would have it."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def copy_repo(dest: Path) -> Path:
    """A copy of the project in `dest`, committed in a git repo of its own (DVC and dvclive need one)."""
    for name in project_files():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    commit_all(dest, "copy")
    return dest


def user_env() -> dict[str, str]:
    """The environment of a user in the project's venv, offline."""
    # The venv's bin first on PATH: dvc runs `python stages/...`, which must be this Python.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "TQDM_DISABLE": "1",
           # Any download attempt fails the test: everything must work offline.
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("IFT_DEBUG", None)
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None
        ) -> str | subprocess.CompletedProcess:
    """Run a command the way a user would in the project (`env` added); return its output (or the process)."""
    result = subprocess.run(cmd, cwd=cwd, env={**user_env(), **(env or {})}, capture_output=True, text=True)
    if not check:
        return result
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr



@contextmanager
def repro_past_first_checkpoint(repo: Path, *args: str) -> Iterator[subprocess.Popen]:
    """`dvc repro args` running in the background, once its first checkpoint is on disk.

    Whatever the test does with it, nothing of it outlives the block: a test that fails midway
    must not leave a stage writing into the repository the next tests use.
    """
    import psutil

    started = time.time()
    dvc = subprocess.Popen(["dvc", "repro", *args], cwd=repo, env=user_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = started + 300
        while not [state for state in repo.glob(".checkpoints/train-*/checkpoint-100/trainer_state.json")
                   if state.stat().st_mtime >= started]:  # this run's, not one an earlier test left
            assert dvc.poll() is None and time.time() < deadline, "no checkpoint was written"
            time.sleep(0.2)
        yield dvc
    finally:
        if dvc.poll() is None:
            tree = psutil.Process(dvc.pid).children(recursive=True)
            for process in tree:
                process.kill()
            dvc.kill()
            psutil.wait_procs(tree, timeout=30)
            dvc.wait(timeout=30)


def save_pythia_like(directory, with_padding_entry=True):
    """A GPT-NeoX + tokenizer shaped like Pythia's, saved like a Hub checkpoint."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|padding|>"] if with_padding_entry else ["<|endoftext|>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(TEXTS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|endoftext|>",
                                        eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    assert tokenizer.pad_token is None and tokenizer.eos_token_id == 0
    config = GPTNeoXConfig(vocab_size=len(tokenizer) + 8, hidden_size=32, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=64, max_position_embeddings=256,
                           bos_token_id=0, eos_token_id=0)
    GPTNeoXForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# What a page loads by itself: <script src>, <link href>, <img src>, CSS url(), fetch/import of a URL.
EXTERNAL_LOAD = re.compile(r"""(src|href)\s*=\s*["']?(https?:)?//"""
                           r"""|url\(\s*["']?(https?:)?//|import\s*\(\s*["']https?:""")
