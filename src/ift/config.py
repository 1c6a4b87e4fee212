"""The params.yaml schema, `load_params()`, and `compose()` (the same steps DVC performs).

DVC composes conf/ in its own process (it cannot import this package), so conf/ holds
plain values only; the schema and range checks live here and run at every stage start.
(Longer than most modules: the schema is the one source of defaults, so each key's reason
is written here, beside its default.)

Usage: python -m ift.config [OVERRIDES...]    e.g. python -m ift.config model=pythia-70m
rewrites params.yaml from conf/ for `dvc repro` users (`dvc exp run -S` does it itself).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ift.errors import UserError, one_line, run_main

PARAMS_FILE = "params.yaml"
CONFIG_DIR = "conf"
CONFIG_NAME = "config"
DATA_SOURCES = ("demo", "hub", "local")
# DVC cannot template an empty dependency: this file, which never changes, stands in for
# inputs.data / inputs.model where nothing local is read (InputsConfig).
NO_LOCAL_INPUT = "conf/no_local_input.txt"
TINY_NAME = "tiny"  # model.name_or_path of the built-in offline model (ift.tiny)
MAX_NEW_TOKENS_CAP = 512  # eval.max_new_tokens=null fits the data, up to this many tokens
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "packed_eager", "flash_attention_2", "flash_attention_3", "flex_attention")


@dataclass
class TinyModelConfig:
    """Architecture of the offline model (GPT-NeoX, the Pythia architecture)."""

    vocab_size: int = 1024
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 512
    rotary_pct: float = 1.0  # Pythia uses 0.25; a tiny model learns to copy faster with 1.0
    # Brief pretraining on ift.demo's synthetic corpus (copying, counting), so that the
    # base model can continue text like a real base LM before it is finetuned.
    pretrain_steps: int = 600
    pretrain_batch_size: int = 32
    pretrain_learning_rate: float = 1e-3


@dataclass
class ModelConfig:
    name_or_path: str = "tiny"  # "tiny", a Hugging Face Hub id, or a local directory
    revision: str | None = None  # a Hub branch, tag or commit; pinned in the presets
    trust_remote_code: bool = False
    tiny: TinyModelConfig | None = field(default_factory=TinyModelConfig)  # null unless name_or_path=tiny


@dataclass
class FieldsConfig:
    """Which source columns hold the instruction, the optional input and the answer."""

    instruction: str = "instruction"
    input: str | None = "input"
    output: str = "output"


@dataclass
class DemoConfig:
    num_examples: int = 5600


@dataclass
class DataConfig:
    source: str = "demo"  # demo | hub | local
    name: str | None = "demo"  # Hub dataset id (source=hub)
    revision: str | None = None  # Hub dataset revision (source=hub)
    path: str | None = None  # file or save_to_disk directory (source=local)
    train_split: str = "train"
    test_split: str | None = None  # None: split train_split with test_size
    fields: FieldsConfig = field(default_factory=FieldsConfig)
    # A fraction of the rows (0 < x < 1) or, from 1 up, a number of rows. The demo's 2,000 put
    # exact match's standard error at or below 0.01 (sqrt(0.5 x 0.5 / 2000) = 0.011 at worst).
    test_size: float = 2000
    limit: int | None = None  # take only the first N rows (streamed from the Hub)
    demo: DemoConfig | None = field(default_factory=DemoConfig)  # null unless source=demo
    # Seeds what is data: the demo examples, the train/test split, the tiny model's pretraining
    # corpus (ift.config.data_seed); null: the top-level seed. `ift spread` holds it while
    # varying `seed`, so that only the path of training changes, as in another environment.
    seed: int | None = None


@dataclass
class InputsConfig:
    """Local inputs, which dvc.yaml lists as fetch's dependencies (${inputs.data}, ${inputs.model}):
    an edit to the file or directory reruns fetch and everything after it. The presets data=local
    and model=local point them at data.path and model.name_or_path."""

    data: str = NO_LOCAL_INPUT
    model: str = NO_LOCAL_INPUT


@dataclass
class LoraConfig:
    """LoRA adapters through peft (train.lora.enabled). models/tuned stays a plain merged model;
    the adapter is saved beside it in models/tuned/adapter/."""

    enabled: bool = False
    # Rank 64 with the usual alpha = 2 x r: on the default (tiny model, train/default) smaller
    # ranks or scales learned visibly less (reports/lora_defaults.md).
    r: int = 64
    alpha: int = 128
    dropout: float = 0.0
    # "all-linear": every Linear but the LM head (for GPT-NeoX: query_key_value, attention.dense,
    # dense_h_to_4h, dense_4h_to_h; peft's own default is query_key_value only), or a list of names.
    target_modules: Any = "all-linear"
    load_in_4bit: bool = False  # QLoRA: 4-bit base weights (bitsandbytes, CUDA GPUs only)


@dataclass
class TrainConfig:
    """transformers TrainingArguments names where one exists, plus max_length."""

    learning_rate: float = 1e-3
    num_train_epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides num_train_epochs
    per_device_train_batch_size: int = 32
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.05
    lr_scheduler_type: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 512  # prompt + answer tokens; longer examples are dropped
    completion_only_loss: bool = True  # loss on the answer (and EOS) only
    bf16: bool | None = None  # None: bf16 autocast where the CPU/GPU has native support
    logging_steps: int = 10
    save_steps: int = 100  # checkpoint every N steps, to resume a killed run; 0: never
    optim: str = "adamw_torch_fused"  # the usual choice on GPUs (on CPU: ift bench --levers)
    # Pack each batch into one row: no padding between examples (tests/test_packing.py proves
    # no attention crosses examples). On CPU, transformers' sdpa and eager attention compute
    # the whole packed row; attn_implementation="packed_eager" computes each example alone
    # (train/default).
    padding_free: bool = True
    # Pad each batch to a multiple of this many tokens (null: no more than needed). A packed
    # row gets whole pad examples (ift.packing): few distinct row lengths, so few matmul
    # shapes, each of which costs set-up time on CPU the first time a process meets it.
    pad_to_multiple_of: int | None = 64
    # "group_by_length" cuts padding without packing, but on the demo data length nearly
    # determines the task, so its batches are single-task and exact match drops (reports/performance.md).
    train_sampling_strategy: str = "random"
    # Attention kernel while training (one of ATTN_IMPLEMENTATIONS): transformers' "sdpa"
    # (PyTorch's fused kernels) or "eager" (plain matmul + softmax), or ours, "packed_eager"
    # (ift.attention: plain attention within each packed example, for CPUs); null: packed_eager
    # on CPU, sdpa on GPUs. Not saved with the model: eval and `ift ask` load it with
    # transformers' default (sdpa where available).
    attn_implementation: str | None = None
    lora: LoraConfig = field(default_factory=LoraConfig)
    # Training processes (data parallel, through torchrun): one per GPU, or CPU processes that
    # share the cores. The global batch is per_device_train_batch_size x
    # gradient_accumulation_steps x num_processes.
    num_processes: int = 1
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, slower
    # true: glibc's malloc keeps the memory a step frees for the next (ift.memory): slightly
    # faster steps at a much higher resident peak that can grow with the run. false: glibc's defaults.
    keep_freed_memory: bool = False
    # torch.compile the loss's vocabulary-wide work (log-softmax, NLL, entropy, argmax): it pays
    # with a large vocabulary and long runs, not for the tiny default, whose first step would
    # pay the compile time (`ift bench --levers`).
    compile_loss: bool = False
    # transformers' FSDP settings, passed through (TrainingArguments fsdp / fsdp_config): GPUs only.
    fsdp: str = ""
    fsdp_config: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalConfig:
    # null: the longest training answer in tokens (EOS included, data/hydrated/stats.json), up
    # to MAX_NEW_TOKENS_CAP, so that long answers are not cut by a limit set for short ones.
    max_new_tokens: int | None = None
    batch_size: int = 64
    limit: int | None = None  # evaluate only the first N test examples
    report_examples: int = 10  # example rows in reports/comparison.md


@dataclass
class Params:
    seed: int = 42
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    inputs: InputsConfig = field(default_factory=InputsConfig)


def data_seed(params: Params) -> int:
    """The seed of everything that is data (demo generation, the split, the tiny model's
    pretraining corpus): data.seed, or the top-level seed when it is null."""
    return params.seed if params.data.seed is None else params.data.seed


def bad_value(source: str, key: str, value: Any, rule: str) -> UserError:
    """The one-line error for a bad params value: where, which key, the rule, how to change it."""
    return UserError(f"{source}: {key}={value} {rule}; fix it with "
                     f"`python -m ift.config {key}=...` or `dvc exp run -S {key}=...`")


def _check_ranges(params: Params, source: str) -> None:
    """Range checks the type system cannot express; each names the key and a valid range."""
    t, d, e = params.train, params.data, params.eval
    checks = [
        (t.learning_rate > 0, "train.learning_rate", t.learning_rate, "must be > 0"),
        (t.num_train_epochs > 0 or t.max_steps > 0, "train.num_train_epochs", t.num_train_epochs,
         "must be > 0 (or set train.max_steps > 0)"),
        (t.per_device_train_batch_size >= 1, "train.per_device_train_batch_size",
         t.per_device_train_batch_size, "must be >= 1"),
        (t.gradient_accumulation_steps >= 1, "train.gradient_accumulation_steps",
         t.gradient_accumulation_steps, "must be >= 1"),
        (0 <= t.warmup_ratio < 1, "train.warmup_ratio", t.warmup_ratio, "must be in [0, 1)"),
        (t.weight_decay >= 0, "train.weight_decay", t.weight_decay, "must be >= 0"),
        (t.pad_to_multiple_of is None or t.pad_to_multiple_of >= 1, "train.pad_to_multiple_of",
         t.pad_to_multiple_of, "must be >= 1 or null"),
        (t.max_length >= 2, "train.max_length", t.max_length, "must be >= 2"),
        (t.logging_steps >= 1, "train.logging_steps", t.logging_steps, "must be >= 1"),
        (t.save_steps >= 0, "train.save_steps", t.save_steps, "must be >= 0 (0 turns checkpoints off)"),
        (0 < d.test_size < 1 or (d.test_size >= 1 and float(d.test_size).is_integer()), "data.test_size",
         d.test_size, "must be a fraction between 0 and 1 (e.g. 0.1) or a whole number of rows (e.g. 2000)"),
        (d.limit is None or d.limit >= 1, "data.limit", d.limit, "must be >= 1 or null"),
        (d.demo is None or d.demo.num_examples >= 2, "data.demo.num_examples",
         d.demo and d.demo.num_examples, "must be >= 2 (a train and a test example)"),
        (t.lora.r >= 1, "train.lora.r", t.lora.r, "must be >= 1"),
        (t.lora.alpha > 0, "train.lora.alpha", t.lora.alpha, "must be > 0"),
        (0 <= t.lora.dropout < 1, "train.lora.dropout", t.lora.dropout, "must be in [0, 1)"),
        (isinstance(t.lora.target_modules, str) or (isinstance(t.lora.target_modules, list) and t.lora.target_modules
                                                    and all(isinstance(m, str) for m in t.lora.target_modules)),
         "train.lora.target_modules", t.lora.target_modules, "must be all-linear or a list of module names"),
        (not t.lora.load_in_4bit or t.lora.enabled, "train.lora.load_in_4bit", t.lora.load_in_4bit,
         "needs train.lora.enabled=true (4-bit weights cannot be trained themselves)"),
        (t.num_processes >= 1, "train.num_processes", t.num_processes, "must be >= 1"),
        (not (t.fsdp and t.lora.enabled), "train.fsdp", t.fsdp, "cannot be combined with train.lora.enabled=true "
         "here (a sharded adapter is not merged): use one or the other"),
        (t.attn_implementation in (None, *ATTN_IMPLEMENTATIONS), "train.attn_implementation", t.attn_implementation,
         f"must be null or one of {', '.join(ATTN_IMPLEMENTATIONS)}"),
        (d.source in DATA_SOURCES, "data.source", d.source, f"must be one of {', '.join(DATA_SOURCES)}"),
        (e.max_new_tokens is None or e.max_new_tokens >= 1, "eval.max_new_tokens", e.max_new_tokens,
         "must be >= 1 or null (fitted to the training answers)"),
        (e.batch_size >= 1, "eval.batch_size", e.batch_size, "must be >= 1"),
        (e.limit is None or e.limit >= 1, "eval.limit", e.limit, "must be >= 1 or null"),
        (e.report_examples >= 0, "eval.report_examples", e.report_examples, "must be >= 0"),
    ]
    for ok, key, value, rule in checks:
        if not ok:
            raise bad_value(source, key, value, rule)
    if params.data.source == "hub" and not params.data.name:
        raise UserError(f"{source}: data.source=hub needs data.name (a Hub dataset id)")
    if params.data.source == "local" and not params.data.path:
        raise UserError(f"{source}: data.source=local needs data.path, e.g. "
                        "`-S data=local -S data.path=my_data.csv`")
    if params.data.source == "demo" and params.data.demo is None:
        raise UserError(f"{source}: data.source=demo needs data.demo.num_examples")
    _check_inputs(params, source)
    if params.model.name_or_path == TINY_NAME and params.model.tiny is None:
        raise UserError(f"{source}: model.name_or_path=tiny needs the model.tiny section "
                        "(select it with model=tiny)")


def check_trainer_choices(cfg: TrainConfig, source: str) -> None:
    """The train.* values that name a transformers choice, against transformers' own lists.

    Apart from validate(), which stays free of transformers' slow import; fetch and train call
    it. Otherwise a typo fails deep inside the Trainer without the key's name, or, for
    train_sampling_strategy, falls back to random batches.
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


def looks_like_a_path(name: str) -> bool:
    """A name that can only be a local path: it starts with ./, ../, / or ~ (Hub ids are "org/name")."""
    return name.startswith(("./", "../", "/", "~", ".\\")) or name in (".", "..")


def expanded_path(name: str) -> Path:
    """`name` as a path, ~ expanded (left as it is for a ~user with no such user: a missing path)."""
    try:
        return Path(name).expanduser()
    except RuntimeError:
        return Path(name)


def is_local_path(name: str) -> bool:
    """A model name that means a local directory: path-like, or a path that exists here (not "tiny")."""
    return looks_like_a_path(name) or (name != TINY_NAME and expanded_path(name).exists())


def _check_inputs(params: Params, source: str) -> None:
    """Local data and models must be DVC dependencies of fetch (inputs.*), or edits to them go unseen."""
    d, m, inputs = params.data, params.model, params.inputs
    if d.source == "local" and d.path and inputs.data != d.path:
        raise UserError(f"{source}: data.path={d.path} is not a DVC dependency (inputs.data={inputs.data}), so an "
                        "edit to it would rerun nothing: select the preset, `-S data=local -S data.path=...`, "
                        f"or set `-S inputs.data={d.path}`")
    if is_local_path(m.name_or_path) and inputs.model != m.name_or_path:
        raise UserError(f"{source}: model.name_or_path={m.name_or_path} is a local directory but not a DVC "
                        f"dependency (inputs.model={inputs.model}), so an edit to it would rerun nothing: select "
                        f"the preset, `-S model=local -S model.name_or_path=...`, or set "
                        f"`-S inputs.model={m.name_or_path}`")


def validate(config: DictConfig | dict, source: str = PARAMS_FILE) -> Params:
    """Merge `config` onto the schema; raise UserError naming the offending key."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Params), config)
        params: Params = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        reason = one_line(str(exc).split("\n")[0])
        raise UserError(f"{source}: bad value for key '{key}': {reason}") from exc
    _check_ranges(params, source)
    return params


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read params.yaml and validate it against the schema (called at every stage start)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: run `python -m ift.config` to compose it from conf/")
    try:
        loaded = OmegaConf.load(path)
    except Exception as exc:
        raise UserError(f"{path}: not valid YAML: {one_line(str(exc))}") from exc
    return validate(loaded, source=str(path))


def compose(overrides: list[str] | tuple[str, ...] = (), config_dir: str | Path = CONFIG_DIR) -> DictConfig:
    """Compose conf/ with Hydra overrides exactly as `dvc exp run -S` does.

    Mirrors dvc.utils.hydra.compose_and_dump: initialize_config_dir + compose + resolve.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    config_dir = Path(config_dir).resolve()
    if not (config_dir / f"{CONFIG_NAME}.yaml").exists():
        raise UserError(f"{config_dir}/{CONFIG_NAME}.yaml not found: run from the project root")
    try:
        with initialize_config_dir(str(config_dir), version_base=None):
            cfg = hydra_compose(config_name=CONFIG_NAME, overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        reason = one_line(str(exc).split("Config search path")[0])  # the search path is noise here
        raise UserError(f"cannot compose {config_dir.name}/ with {list(overrides)}: {reason}") from exc
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    """The text DVC writes to params.yaml for a composed config."""
    return OmegaConf.to_yaml(cfg)


def write_params(overrides: list[str], out: str | Path = PARAMS_FILE,
                 config_dir: str | Path = CONFIG_DIR) -> Params:
    """Compose, validate, then atomically write params.yaml (never a half-valid file)."""
    from ift.io import write_text

    cfg = compose(overrides, config_dir)
    source = f"{Path(config_dir).name}/ + {list(overrides)}"
    params = validate(cfg, source=source)
    for key, path in (("data.path", params.inputs.data), ("model.name_or_path", params.inputs.model)):
        if path != NO_LOCAL_INPUT and not expanded_path(path).exists():  # DVC's error would be an OSError
            raise UserError(f"{source}: {key}={path}: {expanded_path(path).resolve()} does not exist; "
                            "give an existing file or directory (relative to the project root, or absolute)")
    write_text(out, to_yaml(cfg))
    return params


def as_dict(section: Any) -> dict:
    """A schema section as a plain dict (for metadata files and model cards)."""
    return OmegaConf.to_container(OmegaConf.structured(section), resolve=True)  # type: ignore[return-value]


@run_main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ift.config",
        description="Compose conf/ with Hydra overrides and write params.yaml (as dvc exp run -S does).",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=pythia-70m train.learning_rate=1e-4")
    parser.add_argument("--out", default=PARAMS_FILE, help="file to write (default: params.yaml)")
    parser.add_argument("--config-dir", default=CONFIG_DIR, help="Hydra config directory (default: conf)")
    args = parser.parse_args(argv)
    write_params(args.overrides, args.out, args.config_dir)
    logging.getLogger(__name__).info("wrote %s", args.out)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
