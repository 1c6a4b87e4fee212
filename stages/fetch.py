"""Stage fetch: materialise the dataset into DATA_DIR and the base model into MODEL_DIR.

    python stages/fetch.py data/raw models/base --environment reports/environment/fetch.json

Reads params: seed, model, data (and validates the whole params.yaml). The only stage that
may use the network.
"""

import argparse
import logging
import shutil
from pathlib import Path

from ift.config import PARAMS_FILE, check_trainer_choices, data_seed, load_params
from ift.data import load_splits, require_usable
from ift.environment import fingerprint
from ift.errors import configure_logging, run_main
from ift.io import atomic_dir, write_json, write_jsonl
from ift.modeling import fetch_base_model, save_model
from ift.threads import share_cores
from ift.tiny import PRETRAINING_DTYPE

log = logging.getLogger("ift.fetch")
WORK_DIR = Path(".checkpoints/fetch")  # the trainer's scratch dir while pretraining model=tiny


@run_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir")
    parser.add_argument("model_dir")
    parser.add_argument("--environment", type=Path, required=True, help="where to record what decides float rounding")
    args = parser.parse_args()
    share_cores()  # its share when other jobs run beside it (dvc queue start -j N)
    params = load_params()  # the whole file: a typo in any section stops the first stage that runs
    check_trainer_choices(params.train, PARAMS_FILE)  # here too, so a fresh clone fails before any output

    splits, data_meta = load_splits(params.data, data_seed(params))
    # Refuse unusable data here, in the first stage, so that a bad input leaves dvc.lock as it was.
    usable = {name: require_usable(records, f"{data_meta.get('path') or data_meta.get('name')} [{name}]")
              for name, records in splits.items()}
    model, tokenizer, model_meta = fetch_base_model(params.model, usable["train"], params.seed, WORK_DIR,
                                                    corpus_seed=data_seed(params))
    shutil.rmtree(WORK_DIR, ignore_errors=True)

    # Both outputs appear together, or neither: a failure leaves the previous ones in place.
    with atomic_dir(args.data_dir) as data_tmp, atomic_dir(args.model_dir) as model_tmp:
        for name, records in splits.items():
            write_jsonl(data_tmp / f"{name}.jsonl", records)
        write_json(data_tmp / "metadata.json", data_meta)
        save_model(model, tokenizer, model_tmp)
        write_json(model_tmp / "metadata.json", model_meta)
    # The dtype of the tiny model's pretraining; a Hub or local model is only loaded here.
    write_json(args.environment, fingerprint(PRETRAINING_DTYPE if params.model.tiny else "none (loaded)"))
    log.info("fetched %s (%s) and model %s (%d parameters)", data_meta.get("name", data_meta["source"]),
             data_meta["counts"], model_meta["name_or_path"], model_meta["parameters"])


if __name__ == "__main__":
    configure_logging()
    main()
