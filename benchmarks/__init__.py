"""The benchmark (`ift bench`, or `python -m benchmarks` from the repository's root).

Everything is measured side by side in one run on one machine (ratios are what count on a
shared, noisy machine) and written to reports/bench.json and reports/bench.md:

1. pipeline: the committed default pipeline rebuilt from scratch in a temporary copy (per
   stage wall time and peak memory), then a `dvc repro` with nothing to do;
2. eval: the eval stage's batched generation against a faithful re-creation of the
   tutorial's loop, on the tuned tiny model from (1) and on a model with pythia-70m's exact
   shape (random weights: the Hub is unreachable here);
3. train: tokens/s and model FLOP utilisation of our train step on the pythia-70m shape,
   against the matrix-multiply peak measured in the same run; padding waste;
4. whole process: the tutorial's loop as a script of its own against
   `dvc repro -f -s tuned_eval`, on the same tuned model and test set (start-up included).

Modules: `workloads` (models and data shapes), `clocks` (timers and counters), `tutorial`
(the tutorial's loop), `generation`, `training`, `pipeline` and `levers` (the
measurements), `report` (targets and bench.md), `run` (all of it, on committed code).
"""
