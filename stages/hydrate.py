"""Stage hydrate: fill the prompt templates; write {"input": prompt, "output": answer} rows.

    python stages/hydrate.py data/raw models/base data/hydrated

Reads params: model.trust_remote_code. Writes OUT_DIR/train.jsonl, OUT_DIR/test.jsonl and
OUT_DIR/stats.json (rows in/out, dropped rows and why, token-length percentiles with the
base model's tokenizer).
"""

import argparse
import logging
from pathlib import Path

from ift.config import load_params
from ift.data import drop_unusable, require_usable, token_length_stats
from ift.errors import configure_logging, run_main
from ift.hub import set_offline
from ift.io import atomic_dir, read_jsonl, write_json, write_jsonl
from ift.modeling import load_tokenizer
from ift.prompts import hydrate

log = logging.getLogger("ift.hydrate")


@run_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("raw_dir", type=Path)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    set_offline()
    tokenizer = load_tokenizer(args.model_dir, trust_remote_code=load_params().model.trust_remote_code)

    stats = {}
    with atomic_dir(args.out_dir) as tmp:
        for split in ("train", "test"):
            records = read_jsonl(args.raw_dir / f"{split}.jsonl")
            kept, dropped = drop_unusable(records)
            rows = [hydrate(record) for record in require_usable(kept, f"{args.raw_dir / split}.jsonl")]
            write_jsonl(tmp / f"{split}.jsonl", rows)
            stats[split] = {"rows_in": len(records), "rows_out": len(rows), "dropped": dropped,
                            "tokens": token_length_stats(rows, tokenizer)}
            if sum(dropped.values()):
                log.warning("%s: dropped %s", split, dropped)
        write_json(tmp / "stats.json", stats)
    log.info("hydrated train=%d test=%d rows", stats["train"]["rows_out"], stats["test"]["rows_out"])


if __name__ == "__main__":
    configure_logging()
    main()
