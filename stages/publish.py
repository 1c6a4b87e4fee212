"""Stage publish: copy the stages' results into reports/, where Git keeps them for review.

    python stages/publish.py results reports

Every file under RESULTS_DIR goes to the same relative path under REPORTS_DIR. The stages
write results/, which DVC caches, so that a shared run-cache can restore them: DVC restores
a stage only if every output of it can be pulled, and a Git-tracked (`cache: false`) output
is never pushed. The copies are what reviewers, `dvc metrics`, `dvc plots` and `ift verify`
read. No params; nothing but copying, so that rerunning it after a restore costs nothing.
"""

import argparse
import logging
import shutil
from pathlib import Path

from ift.errors import UserError, configure_logging, run_main
from ift.io import atomic_path

log = logging.getLogger("ift.publish")


@run_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("reports_dir", type=Path)
    args = parser.parse_args()
    # Hidden files are DVC's .gitignore entries and interrupted writes, not results.
    sources = sorted(path for path in args.results_dir.rglob("*")
                     if path.is_file() and not any(part.startswith(".") for part in
                                                   path.relative_to(args.results_dir).parts))
    if not sources:
        raise UserError(f"{args.results_dir}/ holds no results: run `dvc repro` to build them")
    for source in sources:
        with atomic_path(args.reports_dir / source.relative_to(args.results_dir)) as tmp:
            shutil.copyfile(source, tmp)
    log.info("published %d files from %s/ to %s/", len(sources), args.results_dir, args.reports_dir)


if __name__ == "__main__":
    configure_logging()
    main()
