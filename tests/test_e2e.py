"""End to end: copy the repository to a temporary directory and run `dvc repro` there."""

import json
from pathlib import Path

import pytest

from ift.evaluation import METRIC_KEYS
from tests.conftest import copy_repo, run, user_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    return copy_repo(tmp_path_factory.mktemp("repo"))


def test_dvc_repro_builds_everything_then_does_nothing(repo_copy):
    first = run(["dvc", "repro"], repo_copy)
    for stage in ("fetch", "hydrate", "baseline_eval", "train", "tuned_eval"):
        assert f"Running stage '{stage}'" in first

    metrics = {name: json.loads((repo_copy / f"reports/{name}/metrics.json").read_text())
               for name in ("baseline", "tuned")}
    for values in metrics.values():
        assert tuple(values) == METRIC_KEYS
    assert metrics["tuned"]["n_examples"] == metrics["baseline"]["n_examples"] > 0
    assert metrics["tuned"]["exact_match"] >= 0.6
    assert metrics["tuned"]["exact_match"] - metrics["baseline"]["exact_match"] >= 0.5
    assert metrics["tuned"]["token_f1"] > metrics["baseline"]["token_f1"]

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tuned = repo_copy / "models/tuned"
    assert (tuned / "model.safetensors").exists()
    tokenizer = AutoTokenizer.from_pretrained(tuned)
    model = AutoModelForCausalLM.from_pretrained(tuned)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    report = (repo_copy / "reports/comparison.md").read_text()
    assert "| exact_match |" in report and "| question | reference | base model | tuned model |" in report

    second = run(["dvc", "repro"], repo_copy)
    assert "Running stage" not in second
    assert "Data and pipelines are up to date" in second


def test_train_killed_after_a_checkpoint_resumes_to_the_same_model(repo_copy):
    """SIGKILL the train stage after its first checkpoint; the next `dvc repro` resumes and
    finishes with the same weights as the uninterrupted run."""
    import hashlib
    import signal
    import subprocess
    import time

    import psutil

    weights = repo_copy / "models/tuned/model.safetensors"
    uninterrupted = hashlib.md5(weights.read_bytes()).hexdigest()
    uninterrupted_reports = train_reports(repo_copy)
    dvc = subprocess.Popen(["dvc", "repro", "--force", "--single-item", "train"], cwd=repo_copy, env=user_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(repo_copy.glob(".checkpoints/train-*/checkpoint-100/trainer_state.json")):
        assert dvc.poll() is None and time.time() < deadline, "no checkpoint was written"
        time.sleep(0.2)
    for child in psutil.Process(dvc.pid).children(recursive=True):
        if "stages/train.py" in " ".join(child.cmdline()):
            child.send_signal(signal.SIGKILL)  # as a power loss would: no cleanup at all
    assert dvc.wait(timeout=60) != 0

    resumed = run(["dvc", "repro"], repo_copy)
    assert "resuming from checkpoint" in resumed and "(step 100)" in resumed
    assert hashlib.md5(weights.read_bytes()).hexdigest() == uninterrupted
    assert train_reports(repo_copy) == uninterrupted_reports  # metrics and curves too
    assert not list(repo_copy.glob(".checkpoints/train-*"))  # finished runs clean up
    assert not list(repo_copy.glob("models/.tuned.*.tmp"))


def train_reports(root: Path) -> dict[str, str]:
    """{path: text} of the train stage's reports (training metrics, dvclive curves)."""
    return {str(p.relative_to(root)): p.read_text() for p in sorted((root / "reports/train").rglob("*")) if p.is_file()}


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def test_ift_ask_answers_with_the_tuned_model(repo_copy):
    result = run(["ift", "ask", "How many words are in the list?", "--input", "cat dog red"], repo_copy, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].strip(), result.stdout  # the answer alone on stdout (logs: stderr)


def test_exp_run_reruns_only_what_depends_on_the_change(repo_copy):
    eval_change = run(["dvc", "exp", "run", "-S", "eval.max_new_tokens=7"], repo_copy)
    assert stages_run(eval_change) == {"baseline_eval", "tuned_eval"}
    train_change = run(["dvc", "exp", "run", "-S", "train.max_steps=5"], repo_copy)
    assert stages_run(train_change) == {"train", "tuned_eval"}


def test_pythia_like_model_and_company_csv_end_to_end(repo_copy, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.test_pythia_like import save_pythia_like

    model_dir = save_pythia_like(tmp_path / "pythia-like")
    rows = ["Customer Question,Agent Answer"] + [
        f'"How do I reset {{device_{i}}}? ### Response: é",Hold the {{button}} for {i} seconds.'
        for i in range(30)]
    csv = tmp_path / "company data.csv"
    csv.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode("utf-8") + b"\r\n")
    run(["dvc", "exp", "run", "-S", "model=pythia-70m", "-S", f"model.name_or_path='{model_dir}'",
         "-S", "data=local", "-S", f"data.path='{csv}'",
         "-S", "data.fields.instruction='Customer Question'", "-S", "data.fields.input=null",
         "-S", "data.fields.output='Agent Answer'"], repo_copy)

    tuned = repo_copy / "models/tuned"
    tokenizer = AutoTokenizer.from_pretrained(tuned)
    model = AutoModelForCausalLM.from_pretrained(tuned)
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    hydrated = (repo_copy / "data/hydrated/train.jsonl").read_text(encoding="utf-8")
    assert "{device_" in hydrated and "{button}" in hydrated and "### Response: é" in hydrated
    metadata = json.loads((repo_copy / "models/base/metadata.json").read_text())
    assert metadata["name_or_path"] == str(model_dir)
