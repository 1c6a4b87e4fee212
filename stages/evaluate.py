"""Stages baseline_eval and tuned_eval: generate answers for the test split and score them.

    python stages/evaluate.py models/base data/hydrated/test.jsonl results/baseline \
        --stats data/hydrated/stats.json --environment results/environment/baseline_eval.json
    python stages/evaluate.py models/tuned data/hydrated/test.jsonl results/tuned \
        --stats data/hydrated/stats.json --baseline results/baseline --base-model models/base \
        --comparison results/comparison.md --environment results/environment/tuned_eval.json

Reads params: seed (for the bootstrap), eval, model.trust_remote_code. Writes OUT_DIR/metrics.json
(each metric with its standard error) and OUT_DIR/predictions.jsonl (each example's scores);
with --baseline, also the paired comparison report and its plot data.
Timings go to reports/timings/ (they vary run to run, so they are not DVC outputs).
"""

import argparse
import logging
import time
from pathlib import Path

from ift.config import load_params
from ift.environment import fingerprint
from ift.errors import configure_logging, run_main
from ift.evaluation import evaluate
from ift.generation import fitted_max_new_tokens
from ift.hub import set_offline
from ift.io import atomic_dir, read_json, read_jsonl, write_json, write_jsonl, write_text
from ift.modeling import load_model, load_tokenizer
from ift.report import comparison_markdown, comparison_plot_rows, generation_warnings
from ift.threads import share_cores

log = logging.getLogger("ift.evaluate")
TIMINGS_DIR = Path("reports/timings")


@run_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("test_file", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--stats", type=Path, required=True,
                        help="hydrate's stats.json (the training answers' lengths fit eval.max_new_tokens=null)")
    parser.add_argument("--baseline", type=Path, help="baseline report dir to compare against")
    parser.add_argument("--base-model", type=Path, help="the baseline's model dir (named in the report)")
    parser.add_argument("--comparison", type=Path, help="where to write the Markdown comparison")
    parser.add_argument("--environment", type=Path, required=True, help="where to record what decides float rounding")
    args = parser.parse_args()
    share_cores()  # its share when other jobs run beside it (dvc queue start -j N)
    set_offline()
    params = load_params()
    cfg = params.eval
    started = time.perf_counter()

    trust = params.model.trust_remote_code
    tokenizer = load_tokenizer(args.model_dir, padding_side="left", trust_remote_code=trust)
    model = load_model(args.model_dir, trust_remote_code=trust)
    rows = read_jsonl(args.test_file)[: cfg.limit]
    max_new_tokens = fitted_max_new_tokens(cfg.max_new_tokens, read_json(args.stats))
    if cfg.max_new_tokens is None:
        log.info("eval.max_new_tokens=null: generating up to %d tokens (the longest training answer)", max_new_tokens)
    metrics, predictions = evaluate(model, tokenizer, rows, max_new_tokens, cfg.batch_size, params.seed,
                                    desc=f"eval {args.model_dir}")

    for warning in generation_warnings(predictions, max_new_tokens, str(args.model_dir)):
        log.warning(warning)
    # Everything is computed before the first output is written (run by hand, a failure leaves
    # the old outputs; `dvc repro` removes a stage's outputs before running it anyway).
    baseline = read_json(args.baseline / "metrics.json") if args.baseline else None
    comparison = None
    if args.baseline and args.comparison:
        base_name = read_json(args.base_model / "metadata.json")["name_or_path"] if args.base_model else "base"
        comparison = comparison_markdown(
            read_jsonl(args.baseline / "predictions.jsonl"), predictions, cfg.report_examples,
            baseline_name=base_name, tuned_name=f"{base_name} finetuned ({args.model_dir})", seed=params.seed,
            max_new_tokens=max_new_tokens)
    with atomic_dir(args.out_dir) as tmp:
        write_json(tmp / "metrics.json", metrics)
        write_jsonl(tmp / "predictions.jsonl", predictions)
        if baseline is not None:
            write_json(tmp / "comparison_plot.json", comparison_plot_rows(baseline, metrics))
    if comparison is not None:
        write_text(args.comparison, comparison)
    write_json(args.environment, fingerprint(str(model.dtype).removeprefix("torch.")))
    seconds = time.perf_counter() - started
    write_json(TIMINGS_DIR / f"{args.out_dir.name}.json",
               {"seconds": round(seconds, 3), "examples": len(rows),
                "examples_per_second": round(len(rows) / seconds, 2)})
    log.info("%s: exact_match=%.3f token_f1=%.3f on %d examples (%.1fs)", args.out_dir,
             metrics["exact_match"], metrics["token_f1"], len(rows), seconds)


if __name__ == "__main__":
    configure_logging()
    main()
