"""python -m benchmarks [--out DIR] [--levers]: run the benchmark on the committed code."""

from __future__ import annotations

import argparse
from pathlib import Path

from ift.errors import configure_logging, run_main


@run_main
def main(argv: list[str] | None = None) -> None:
    from benchmarks.report import markdown
    from benchmarks.run import run

    parser = argparse.ArgumentParser(prog="ift bench", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("reports"), help="directory for bench.json/bench.md")
    parser.add_argument("--levers", action="store_true",
                        help="also measure every training and eval option against the one kept (much longer)")
    args = parser.parse_args(argv)
    configure_logging()
    print(markdown(run(Path.cwd(), args.out, levers=args.levers)))


if __name__ == "__main__":
    main()
