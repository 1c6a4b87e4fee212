"""The `ift` command: talk to a tuned model, verify the committed metrics, benchmark.

    ift ask "What is the capital of France?" [--input TEXT] [--model DIR]
    ift chat [--model DIR]
    ift verify [--exact | --tolerance X] [--keep | --here]
    ift spread [--seeds N ...]
    ift bench [--out DIR] [--levers]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from ift.errors import UserError, configure_logging, run_main

DEFAULT_MODEL = Path("models/tuned")


def _project_params():
    """params.yaml when there is one (the stages' settings), else the schema's defaults."""
    from ift.config import PARAMS_FILE, Params, load_params

    return load_params() if Path(PARAMS_FILE).exists() else Params()


def _max_new_tokens_default() -> int:
    """eval.max_new_tokens of the project, fitted to the hydrated data as the eval stages fit it
    (the cap where there is no hydrated data yet)."""
    from ift.config import MAX_NEW_TOKENS_CAP
    from ift.generation import HYDRATED_STATS, fitted_max_new_tokens
    from ift.io import read_json

    configured = _project_params().eval.max_new_tokens
    if configured is not None:
        return configured
    if not Path(HYDRATED_STATS).exists():
        return MAX_NEW_TOKENS_CAP
    return fitted_max_new_tokens(None, read_json(HYDRATED_STATS))


class Assistant:
    """A finetuned model answering single-turn instructions with the pipeline's template."""

    def __init__(self, model_dir: Path, max_new_tokens: int):
        from ift.hub import set_offline
        from ift.modeling import load_model, load_tokenizer

        if not (model_dir / "config.json").exists():
            raise UserError(f"{model_dir}: no model there; run `dvc repro` first or pass --model DIR")
        set_offline()
        trust = _project_params().model.trust_remote_code  # the consent given in params.yaml
        self.tokenizer = load_tokenizer(model_dir, padding_side="left", trust_remote_code=trust)
        self.model = load_model(model_dir, trust_remote_code=trust).eval()
        self.max_new_tokens = max_new_tokens

    def answer(self, instruction: str, input: str | None = None, stream: bool = True) -> str:
        """Generate (and print token by token, if `stream`) the answer; return it."""
        import torch
        from transformers import TextStreamer

        from ift.generation import generation_kwargs
        from ift.prompts import format_prompt

        prompt = format_prompt(instruction, input)
        inputs = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt").to(self.model.device)
        streamer = TextStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True) if stream else None
        with torch.inference_mode():
            output = self.model.generate(**inputs, streamer=streamer,
                                         **generation_kwargs(self.tokenizer, self.max_new_tokens))
        return self.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def cmd_ask(args: argparse.Namespace) -> None:
    Assistant(args.model, args.max_new_tokens or _max_new_tokens_default()).answer(args.question, args.input)


def cmd_chat(args: argparse.Namespace) -> None:
    assistant = Assistant(args.model, args.max_new_tokens or _max_new_tokens_default())
    print(f"Chatting with {args.model}. Each message is a new instruction (the template is "
          "single-turn). Empty line, 'exit' or Ctrl-D to quit.", file=sys.stderr)
    while True:
        try:
            message = input("you> ").strip()
        except EOFError:
            print(file=sys.stderr)
            break
        if message in ("", "exit", "quit"):
            break
        print("model> ", end="", flush=True)
        assistant.answer(message)


def cmd_verify(args: argparse.Namespace) -> None:
    from ift.verify import verify

    if not verify(Path.cwd(), "exact" if args.exact else None, args.tolerance, args.keep, args.here):
        sys.exit(1)


def cmd_spread(args: argparse.Namespace) -> None:
    from ift.spread import markdown, measure_spread

    print(markdown(measure_spread(Path.cwd(), args.by, args.seeds, args.keep)))


def cmd_bench(args: argparse.Namespace) -> None:
    """Run the repository's top-level `benchmarks` package (it measures a checkout, not the install)."""
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    root = Path(top.stdout.strip()) if top.returncode == 0 else None
    if root is None or not (root / "benchmarks" / "__main__.py").is_file():
        raise UserError(f"{Path.cwd()}: not in a checkout of this repository; `ift bench` measures "
                        "a checkout's committed code: run it inside one")
    cmd = [sys.executable, "-m", "benchmarks", "--out", str(args.out.resolve()), *(["--levers"] if args.levers else [])]
    sys.exit(subprocess.run(cmd, cwd=root).returncode)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ift", description="Instruction finetuning pipeline tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ask = commands.add_parser("ask", help="answer one question with the tuned model (streams tokens)")
    ask.add_argument("question", help="the instruction or question")
    ask.add_argument("--input", default=None, help="optional input/context for the instruction")
    chat = commands.add_parser("chat", help="an interactive loop with the tuned model")
    for sub in (ask, chat):
        sub.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model directory (default: models/tuned)")
        sub.add_argument("--max-new-tokens", type=int, default=None,
                         help="default: eval.max_new_tokens from params.yaml")
    ask.set_defaults(func=cmd_ask)
    chat.set_defaults(func=cmd_chat)

    verify = commands.add_parser(
        "verify", help="rebuild the committed pipeline from scratch and compare with the committed metrics: "
                       "exactly in the environment that made them, within their noise elsewhere")
    how = verify.add_mutually_exclusive_group()
    how.add_argument("--exact", action="store_true",
                     help="demand identical metrics and byte-identical outputs whatever the environment")
    how.add_argument("--tolerance", type=float, default=None,
                     help="accept any metric within this absolute difference instead")
    where = verify.add_mutually_exclusive_group()
    where.add_argument("--keep", action="store_true", help="keep the temporary rebuild for inspection")
    where.add_argument("--here", action="store_true",
                       help="compare this checkout's results, as `dvc repro` left them, instead of rebuilding "
                            "(right after `dvc repro` on a fresh clone, as CI does, that is a rebuild from scratch)")
    verify.set_defaults(func=cmd_verify)

    spread = commands.add_parser(
        "spread", help="rerun the committed pipeline a few times and write each metric's run-to-run spread "
                       "(one pipeline run each; reports/spread.json is what ift verify counts)")
    from ift.spread import DEFAULT_SEEDS, ROUNDING_SETTINGS

    spread.add_argument("--by", choices=("rounding", "seed"), default="rounding",
                        help="rounding (default): rebuild with other kernels of this machine ("
                             + "; ".join(ROUNDING_SETTINGS) + "), into reports/spread.json; seed: "
                             "dvc exp run -S seed=N with the data seed held, into reports/seed_spread.json")
    spread.add_argument("--seeds", type=int, nargs="+", default=None,
                        help=f"with --by seed (default: {' '.join(map(str, DEFAULT_SEEDS))})")
    spread.add_argument("--keep", action="store_true", help="keep the temporary copy for inspection")
    spread.set_defaults(func=cmd_spread)

    bench = commands.add_parser("bench", help="benchmark against the tutorial's way and this machine's peak "
                                "(writes reports/bench.json and reports/bench.md; several minutes)")
    bench.add_argument("--out", type=Path, default=Path("reports"), help="directory for bench.json/bench.md")
    bench.add_argument("--levers", action="store_true",
                       help="also measure every option considered against the one kept (several times longer)")
    bench.set_defaults(func=cmd_bench)
    return parser


@run_main
def main(argv: list[str] | None = None) -> None:
    configure_logging()
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
