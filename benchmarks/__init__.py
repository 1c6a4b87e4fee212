"""The benchmark (`ift bench`, or `python -m benchmarks` from the repository's root).

Everything is measured side by side in one run on one machine (ratios are what count on a
shared, noisy machine) and written to reports/bench.json and reports/bench.md:

1. train: our train step on the pythia-70m shape against TRL's SFTTrainer as a user writes
   it (benchmarks/peers.py), on the same examples in the same order: supervised tokens/s,
   the first steps' losses, and an MFU that counts the FLOPs the step must do (flops.py)
   over the bf16 matrix-multiply peak measured in the same run (the higher of a reading
   before and one after our timed steps); padding waste; full
   finetuning against LoRA (peak memory and tokens/s);
2. eval: the eval stage's batched generation against batched `generate()` as a user writes it
   (identical token ids required) and against the tutorial's loop, on the tuned tiny model
   and on a model with pythia-70m's exact shape (random weights: the Hub is unreachable
   here); and long answers shaped like lamini_docs (max_new_tokens 128) against the loop;
3. pipeline: the committed default pipeline rebuilt from scratch in a temporary copy (per
   stage wall time and peak memory), a `dvc repro` with nothing to do, and a queue of two
   experiments with `dvc queue start -j 2` against `-j 1`.

Modules: `workloads` (models and data shapes), `clocks` (timers and counters), `flops`
(what a step must compute), `peers` (what users would run instead), `tutorial` (the
tutorial's loop), `generation`, `training`, `pipeline` and `levers` (the
measurements), `report` (targets and bench.md), `run` (all of it, on committed code).
"""
