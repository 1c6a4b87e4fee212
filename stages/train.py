"""Stage train: finetune the base model on the hydrated training rows.

    python stages/train.py models/base data/hydrated/train.jsonl models/tuned results/train \
        --data-meta data/raw/metadata.json --environment results/environment/train.json

Reads params: seed, train, model.trust_remote_code. Writes the tuned model
(save_pretrained layout, safetensors; with train.lora.enabled the adapter too, in
adapter/) with a model card (README.md), and the training metrics and loss curves
(dvclive) and run.json (the run key the model card names) into RESULTS_DIR. With
train.num_processes > 1 it runs itself under torchrun, one process per device; rank 0
writes every output.
"""

import argparse
import logging
import shutil
import sys
from pathlib import Path

from ift.adapters import four_bit_quantization, save_merged
from ift.config import PARAMS_FILE, as_dict, check_trainer_choices, load_params
from ift.environment import fingerprint
from ift.errors import configure_logging, run_main
from ift.hub import set_offline
from ift.io import atomic_dir, read_json, read_jsonl, write_json, write_text
from ift.memory import keep_freed_memory_where_set
from ift.modeling import load_model, load_tokenizer, save_model
from ift.processes import (
    exit_with_launcher,
    is_local_main_process,
    is_main_process,
    launched_by_torchrun,
    leave_process_group,
    run_under_torchrun,
    world_size,
)
from ift.report import model_card
from ift.threads import share_cores
from ift.tokenization import build_dataset
from ift.trainer import compute_dtype
from ift.training import finetune, run_key

log = logging.getLogger("ift.train")
# Checkpoints live outside DVC's outputs (so the run cache still works), keyed by the
# stage's inputs and code: a rerun with the same inputs resumes, a changed input starts afresh.
CHECKPOINTS = Path(".checkpoints")


@run_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base_dir", type=Path)
    parser.add_argument("train_file", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--data-meta", type=Path, required=True, help="fetch's data metadata (for the model card)")
    parser.add_argument("--environment", type=Path, required=True, help="where to record what decides float rounding")
    args = parser.parse_args()
    share_cores()  # its share when other jobs run beside it (dvc queue start -j N)
    set_offline()
    params = load_params()
    cfg = params.train
    keep_freed_memory_where_set(cfg)  # before the model's and the steps' allocations
    check_trainer_choices(cfg, PARAMS_FILE)
    quantization = four_bit_quantization() if cfg.lora.load_in_4bit else None

    tokenizer = load_tokenizer(args.base_dir, trust_remote_code=params.model.trust_remote_code)
    dataset, stats = build_dataset(read_jsonl(args.train_file), tokenizer, cfg.max_length,
                                   source=str(args.train_file))
    if cfg.num_processes > 1 and not launched_by_torchrun():  # (bad input has been refused above)
        run_under_torchrun(cfg.num_processes, __file__, sys.argv[1:])
        return
    exit_with_launcher()
    if is_main_process():
        log.info("training on %d examples (%d tokens, %d of them answer tokens)",
                 stats["examples"], stats["tokens"], stats["answer_tokens"])
    model = load_model(args.base_dir, trust_remote_code=params.model.trust_remote_code,
                       quantization_config=quantization)

    inputs = [args.base_dir, args.train_file, Path(__file__)]  # and the ift code it imported (run_key)
    run = run_key(params.seed, cfg, inputs)
    work_dir = CHECKPOINTS / f"train-{run}"
    if not is_main_process():
        finetune(model, tokenizer, dataset, cfg, params.seed, work_dir, reports_dir=None)
        if is_local_main_process():  # another machine's checkpoints (train.num_processes across machines)
            shutil.rmtree(work_dir, ignore_errors=True)
        leave_process_group()
        return
    with atomic_dir(args.results_dir) as results_tmp, atomic_dir(args.out_dir) as model_tmp:
        trained, result = finetune(model, tokenizer, dataset, cfg, params.seed, work_dir, results_tmp)
        if cfg.lora.enabled:
            save_merged(trained, args.base_dir, tokenizer, model_tmp, params.model.trust_remote_code)
        else:
            save_model(trained, tokenizer, model_tmp)
        card = model_card(read_json(args.base_dir / "metadata.json"), read_json(args.data_meta),
                          as_dict(cfg), params.seed, result, run)
        write_text(model_tmp / "README.md", card)
        write_json(results_tmp / "run.json", {"run_key": run})  # what the model card names, kept in Git
    write_json(args.environment, fingerprint(compute_dtype(cfg), world_size()))
    shutil.rmtree(work_dir, ignore_errors=True)  # the run finished: its checkpoints are not needed
    leave_process_group()
    log.info("trained %d steps, last logged training loss %.4f", result["global_step"], result["final_loss"])


if __name__ == "__main__":
    configure_logging()
    main()
