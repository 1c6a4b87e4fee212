"""The benchmark's pure parts: the report, the padding measure and the synthetic lengths (the timings themselves
are measured by `ift bench`, not by tests). The report is tested on a fixed sample of results
(tests/data/bench_results.json), so no test waits for the benchmark to be rerun."""

import json

import pytest

from benchmarks.clocks import in_both_orders, padding_waste
from benchmarks.generation import first_tokens_agree
from benchmarks.report import TARGETS, markdown, target_met, target_value
from benchmarks.workloads import alpaca_like_lengths
from tests.helpers import ROOT

SAMPLE = ROOT / "tests/data/bench_results.json"


def test_report_flags_each_target():
    results = json.loads(SAMPLE.read_text())
    text = markdown(results)
    for key, (op, target) in TARGETS.items():
        value = target_value(results, key)  # a KeyError: bench.json lacks a target key
        met = value >= target if op == ">=" else value <= target
        row = next(line for line in text.splitlines() if line.startswith(f"| `{key}` |"))
        assert row.endswith("| yes |") == met, row


def test_sample_has_every_target_key_with_its_target():
    results = json.loads(SAMPLE.read_text())
    assert set(results["eval_speedup_vs_tutorial_loop"]) == {"tiny", "pythia70m"}  # a figure, not a target
    assert set(results["targets"]) == set(TARGETS)
    for key, entry in results["targets"].items():
        assert entry["value"] == target_value(results, key) and entry["met"] == target_met(results, key), key
    for stage in ("fetch", "hydrate", "baseline_eval", "train", "tuned_eval", "publish"):
        assert {"seconds", "peak_rss_mib"} <= set(results["pipeline"]["stages"][stage]), stage


def test_required_flops_count_each_part_from_the_examples():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from benchmarks.flops import required_flops

    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=32))
    embeddings = 2 * 100 * 16  # input embedding and LM head, untied
    non_embedding = sum(p.numel() for p in model.parameters()) - embeddings
    flops = required_flops(model, [(3, 1), (4, 2)])  # (tokens, labelled tokens)
    assert flops["non_embedding"] == 6 * non_embedding * 7
    assert flops["lm_head"] == 6 * 100 * 16 * 3
    assert flops["attention"] == 12 * 2 * 16 * (6 + 10)  # keys attended: 1+2+3, 1+2+3+4
    assert flops["total"] == flops["non_embedding"] + flops["lm_head"] + flops["attention"]


def test_decode_flops_count_the_steps_not_the_prefill():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from benchmarks.flops import decode_flops

    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=32))
    non_embedding = sum(p.numel() for p in model.parameters()) - 2 * 100 * 16
    # Prompts of 3 and 2 tokens; 3 and 1 generated: 2 + 0 tokens fed back, at positions 3, 4 of
    # the first row (4 and 5 keys); the second row's only token comes from the prefill's logits.
    flops = decode_flops(model, [3, 2], [3, 1])
    assert flops == 2 * non_embedding * 2 + 2 * 100 * 16 * 4 + 4 * 2 * 16 * (4 + 5)
    assert decode_flops(model, [3], [0]) == 0


def test_batched_generate_as_a_user_writes_it_gives_our_token_ids(tiny_model, tiny_tokenizer):
    """The peer and our generation agree token for token (the bench's identical-ids check)."""
    from benchmarks.peers import batched_generate
    from ift.generation import generate_token_ids
    from ift.prompts import format_prompt

    prompts = [format_prompt(instruction, words) for instruction, words in [
        ("Reverse the order of the words.", "cat dog"), ("Sort the words.", "red fig kiwi pear"),
        ("What is 2 plus one?", ""), ("Reverse the order of the words.", "cat dog red"), ("Sort the words.", "apple")]]
    ours = generate_token_ids(tiny_model, tiny_tokenizer, prompts, 6, batch_size=3)
    assert batched_generate(tiny_model, tiny_tokenizer, prompts, 6, batch_size=3) == ours


def test_report_flags_a_changed_value():
    results = json.loads(SAMPLE.read_text())
    results["pipeline_seconds"] = 10_000.0
    row = next(line for line in markdown(results).splitlines() if line.startswith("| `pipeline_seconds` |"))
    assert row.endswith("| **no** |")


@pytest.mark.parametrize(("ours", "theirs", "agree"), [
    ([5, 6, 0], [5, 6, 0], True),
    ([5, 6, 7], [5, 6, 7, 8, 9], True),   # ours hit its max_new_tokens first
    ([5, 0], [5, 6, 0], False),           # ours stopped where the tutorial went on
    ([5, 6], [4, 6], False),
])
def test_first_tokens_agree_where_both_generated(ours, theirs, agree):
    assert first_tokens_agree(ours, theirs) is agree


def test_alpaca_like_lengths_are_seeded_and_bounded():
    lengths = alpaca_like_lengths(500, seed=3)
    assert lengths == alpaca_like_lengths(500, seed=3)
    assert all(40 < prompt <= 440 and 1 <= answer <= 1000 for prompt, answer in lengths)


def test_alpaca_like_lengths_within_max_length_keep_the_count_and_drop_what_the_stage_drops():
    drawn = alpaca_like_lengths(500, seed=3)
    kept = alpaca_like_lengths(500, seed=3, max_length=512)
    assert len(kept) == 500 and all(prompt + answer <= 512 for prompt, answer in kept)
    assert any(prompt + answer > 512 for prompt, answer in drawn)  # the cut has something to drop
    fitting = [example for example in drawn if sum(example) <= 512]
    assert kept[:len(fitting)] == fitting  # the same draws, the longer ones left out


class _Trainer:
    """What padding_waste uses of a trainer: its collator, applied by its dataloader."""

    def __init__(self, collate, batches):
        self.data_collator, self.batches = collate, batches

    def get_train_dataloader(self):
        return [self.data_collator(examples) for examples in self.batches]


def test_padding_waste_counts_what_the_collator_adds():
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from ift.packing import PackedRowPadding

    examples = [{"input_ids": [5, 6, 7, 8]}, {"input_ids": [5, 6]}]
    padded = DataCollatorForLanguageModeling(pad_token_id=0)
    assert padding_waste(_Trainer(padded, [examples])) == 2 / 8
    packed = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    assert padding_waste(_Trainer(packed, [examples])) == 0
    # A packed row of 6 tokens padded to 8 with a pad example: 2 of 8 tokens are padding.
    assert padding_waste(_Trainer(PackedRowPadding(packed, 8), [examples])) == 2 / 8
    trainer = _Trainer(padded, [examples, examples[:1]])
    assert padding_waste(trainer) == 2 / 12
    assert trainer.data_collator is padded  # the trainer's own collator is back in place


def test_levers_run_in_both_orders_and_average():
    calls = []

    def measure(value):
        calls.append(value)
        return value * len(calls)  # later runs read higher, as a warming-up machine would

    result = in_both_orders([("a", 1), ("b", 2)], measure)
    assert calls == [1, 2, 2, 1]
    assert result == {"a": (1 * 1 + 1 * 4) / 2, "b": (2 * 2 + 2 * 3) / 2}


def test_timed_process_reports_time_memory_and_failure(tmp_path):
    import sys

    from benchmarks.timed_process import measured
    from ift.errors import UserError

    seconds, peak_mib = measured([sys.executable, "-c", "x = bytearray(200 * 2**20)"], tmp_path, {})
    assert seconds > 0 and peak_mib >= 200  # the child's own allocation, not this process's
    with pytest.raises(UserError, match="failed in"):
        measured([sys.executable, "-c", "raise SystemExit(3)"], tmp_path, {})


def test_ift_bench_outside_a_checkout_is_one_line(tmp_path):
    import subprocess

    done = subprocess.run(["ift", "bench"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error:") and "not in a checkout" in done.stderr


def test_report_shows_full_finetuning_beside_lora_when_measured():
    results = json.loads(SAMPLE.read_text())
    del results["train_footprints"]
    assert "## Full finetuning vs LoRA" not in markdown(results)  # older reports lack it
    results["train_footprints"] = {
        "full finetuning": {"tokens_per_second": 1200.0, "peak_rss_mib": 2100.0, "peak_rss_over_start_mib": 1500.0},
        "LoRA": {"tokens_per_second": 1500.0, "peak_rss_mib": 1300.0, "peak_rss_over_start_mib": 700.0}}
    text = markdown(results)
    assert "| full finetuning | 1200 | 2100 | 1500 |" in text and "| LoRA | 1500 | 1300 | 700 |" in text


def test_peak_memory_is_this_process_own():
    import subprocess
    import sys

    from benchmarks.training import peak_rss_mib

    before = peak_rss_mib()
    block = bytearray(300 * 2**20)
    assert peak_rss_mib() - before >= 250 and block
    # A fresh process does not inherit this one's peak (getrusage's ru_maxrss would).
    code = "from benchmarks.training import peak_rss_mib; print(peak_rss_mib())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert child < before + 250


def test_step_times_separate_the_first_step_from_the_rest():
    from benchmarks.clocks import StepTimes

    times = StepTimes()
    times.times = [10.0, 14.0, 14.5, 15.0, 15.5]  # a slow first step (compilation), then 0.5 s each
    assert times.first_and_later() == {"first_step_seconds": 4.0, "later_step_seconds": 0.5}


def test_the_foreach_lever_builds_a_foreach_adamw(tmp_path):
    from transformers import TrainingArguments

    from benchmarks.levers import ForeachAdamWTrainer

    args = TrainingArguments(output_dir=str(tmp_path), optim="adamw_torch", use_cpu=True, report_to="none")
    optimizer_cls, kwargs = ForeachAdamWTrainer.get_optimizer_cls_and_kwargs(args)
    assert optimizer_cls.__name__ == "AdamW" and kwargs["foreach"] is True and not kwargs.get("fused")


def test_lever_report_shows_measured_options_and_failures():
    from benchmarks.levers import levers_markdown

    levers = {"tiny_train_seconds_per_step": {}, "tiny_fresh_process_train_seconds_per_step": {},
              "tiny_alpaca_like_train_seconds_per_step": {}, "pythia70m_train_tokens_per_second": {},
              "tiny_eval": {},
              "tiny_train_options_in_a_new_process": {
                  "kept": {"first_step_seconds": 0.4, "later_step_seconds": 0.09, "stage_steps": 339,
                           "stage_seconds_at_this_pace": 30.9},
                  "flex": {"error": "NotImplementedError: no backward on CPU"}},
              "pythia70m_long_answers_decoding": {
                  "static": {"first_call_seconds": 12.0, "second_call_seconds": 11.0, "identical_ids": 1.0}},
              "pythia70m_train_memory_allocation_in_a_new_process": {
                  "kept": {"seconds_per_step": 4.97, "peak_memory_mib": 3005.4},
                  "no trim": {"error": "MemoryError"}}}
    text = "\n".join(levers_markdown(levers))
    assert "- kept: 4.97 s, 3005 MiB" in text and "- no trim: failed: MemoryError" in text
    assert "- kept: first 0.40, later 0.090, 339 steps 30.9" in text
    assert "- flex: failed: NotImplementedError: no backward on CPU" in text
    assert "- static: first 12.0, second 11.0, identical 1.000" in text


def test_a_target_not_met_says_by_how_much_and_why():
    results = json.loads(SAMPLE.read_text())
    results["eval"]["pythia70m"]["prefill_tokens"] = {"ours": 3000, "batched_generate": 3600}
    results["eval"]["tiny"]["decode_steps"] = {"run": 150, "without_stopping_at_eos": 192}
    results["pipeline_seconds"], results["noop_repro_seconds"] = 180.0, 0.5
    text = markdown(results)
    assert "- `pipeline_seconds`: 180 against <= 90, 2x short. fetch took" in text
    assert not target_met(results, "generate_speedup_vs_batched_generate.pythia70m")  # (the sample's 1.17x)
    assert "3000 positions against 3600 (1.20x fewer)" in text
    assert "- `noop_repro_seconds`" not in text.split("Targets not met")[1]  # met: no line
    assert "our batches ran 150 decode steps, against 192 at max_new_tokens" in text
    results["long_answers"].update(decode_flops=0.73e12, decode_flops_counted="counted so", matmul_peak_dtype="float32",
                                   matmul_peak_flops_per_second=0.15e12, speedup_ceiling_at_peak=16.1,
                                   ours_fraction_of_peak=0.31)
    assert ("Our answers' decode steps need 0.73 TFLOP (counted so). With the prefill free and every step at the "
            "float32 matmul peak measured in this run (0.15 TFLOP/s), ours would be at most 16.1x the tutorial's "
            "rate; it ran at 0.31 of that peak.") in markdown(results)


def test_report_names_both_peak_readings_where_there_are_two():
    results = json.loads(SAMPLE.read_text())
    assert "the higher of its readings" not in markdown(results)  # (the sample read it once)
    results["train"].update(matmul_peak_readings=[0.39e12, 0.41e12], matmul_peak_flops_per_second=0.41e12)
    assert ("measured in the same run (the higher of its readings before and after our timed steps, 0.39 and "
            "0.41 TFLOP/s), 0.41 TFLOP/s.") in markdown(results)


def test_prefill_and_decode_counts_follow_the_batches():
    from benchmarks.generation import decode_steps, prefill_tokens

    encoded = [[7, 8, 1], [7, 8, 2, 3], [7, 9], [5]]
    # ours, batches of 2 sorted by length: [[7,8,2,3],[7,8,1]] share 2 -> 2 + 2 x 2; [[7,9],[5]] share 0 -> 2 x 2
    # batched generate, in order: [[7,8,1],[7,8,2,3]] -> 2 x 4; [[7,9],[5]] -> 2 x 2
    assert prefill_tokens(encoded, 2) == {"ours": 6 + 4, "batched_generate": 8 + 4}
    generated = [[4, 0], [4, 4, 4], [0], [4, 0]]
    assert decode_steps(encoded, generated, 2, 6) == {"run": 3 + 2, "without_stopping_at_eos": 12}


def test_an_mfu_short_of_its_target_says_where_the_step_time_went():
    results = json.loads(SAMPLE.read_text())
    results["train_mfu"] = results["train"]["mfu"] = 0.08
    results["train"] |= {"step_time_shares": {"matmul": 0.2, "attention": 0.1, "vocabulary_wide": 0.3, "other": 0.4},
                         "mfu_if_matmul_and_attention_took_no_time": 0.114}
    missed = next(line for line in markdown(results).splitlines() if line.startswith("- `train_mfu`"))
    assert "matrix multiplies took 20%, attention 10%" in missed and "the rest 40%" in missed
    assert missed.endswith("Were the matrix multiplies and attention free, MFU would be at most 0.11."), missed


def test_queue_processes_left_in_a_repository_are_stopped_and_others_are_not(tmp_path):
    import subprocess
    import sys

    from benchmarks.pipeline import stop_queue_workers
    from tests.helpers import user_env

    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    lingering = subprocess.Popen([*sleep, "queue-worker"], cwd=tmp_path)  # as a worker that missed its shutdown
    elsewhere = subprocess.Popen([*sleep, "queue-worker"], cwd=ROOT)
    unrelated = subprocess.Popen(sleep, cwd=tmp_path)
    try:
        stop_queue_workers(tmp_path, user_env(), grace=1)
        assert lingering.wait(timeout=10) is not None
        assert elsewhere.poll() is None and unrelated.poll() is None
    finally:
        for process in (lingering, elsewhere, unrelated):
            process.kill()


def test_a_value_just_short_of_its_target_does_not_read_as_the_target():
    results = json.loads(SAMPLE.read_text())
    results["generate_speedup_vs_batched_generate"]["pythia70m"] = 1.4972
    text = markdown(results)
    assert "| `generate_speedup_vs_batched_generate.pythia70m` | 1.497 | >= 1.5 | **no** |" in text
    assert "- `generate_speedup_vs_batched_generate.pythia70m`: 1.497 against >= 1.5, 1.002x short." in text
    assert "| `train_speedup_vs_trl` | 6.19 | >= 3 | yes |" in text  # far from it: 3 digits, as before


def test_new_process_options_average_both_runs_or_report_an_error(tmp_path, monkeypatch):
    import benchmarks.levers as levers

    (tmp_path / "reports/train").mkdir(parents=True)
    (tmp_path / "reports/train/metrics.json").write_text('{"step": 11}')
    calls = {option: 0 for option in levers.TRAIN_OPTIONS}

    def measured(copy, option, steps):
        calls[option] += 1
        if option == "flex":
            return {"error": "no backward"}
        return {"first_step_seconds": 1.0 * calls[option], "later_step_seconds": 0.1 * calls[option]}

    monkeypatch.setattr(levers, "fresh_process_train_times", measured)
    results = levers.bench_train_options(tmp_path)
    kept = results[levers.TRAIN_OPTIONS["kept"][0]]
    assert kept["first_step_seconds"] == 1.5 and kept["later_step_seconds"] == pytest.approx(0.15)
    assert kept["stage_seconds_at_this_pace"] == pytest.approx(1.5 + 0.15 * 10) and kept["stage_steps"] == 11
    assert results[levers.TRAIN_OPTIONS["flex"][0]] == {"error": "no backward"}
