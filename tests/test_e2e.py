"""End to end: copy the repository to a temporary directory and run `dvc repro` there.

The copy builds and runs under another environment than the committed results were made in:
ATEN_CPU_CAPABILITY=avx2, torch's AVX2 vector kernels (other floats from the same code on a
CPU with AVX-512; the default kernels on an AVX2-only one, where the CPU itself differs). So
the build from scratch is also `ift verify`'s rebuild elsewhere, and CI's own `dvc repro`
before the tests is the rebuild in the committed environment. On the reference CPU this is
one of the builds `ift spread` measures the noise from ("avx2 kernels"): a test of verify's
mechanism on real floats, not of a new environment.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ift.verify
from ift.cli import main
from ift.evaluation import METRIC_KEYS
from ift.spread import ROUNDING_SETTINGS
from ift.verify import check, export_head, locked_outputs
from tests.helpers import ROOT, copy_repo, repro_past_first_checkpoint, run, user_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
OTHER_ENVIRONMENT = ROUNDING_SETTINGS["avx2 kernels"]


@pytest.fixture(scope="module", autouse=True)
def other_environment():
    with pytest.MonkeyPatch.context() as patch:
        for name, value in OTHER_ENVIRONMENT.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    return copy_repo(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def committed(tmp_path_factory) -> Path:
    """HEAD's committed tree, as `ift verify` takes it."""
    into = tmp_path_factory.mktemp("committed")
    export_head(ROOT, into)
    return into


def test_dvc_repro_builds_everything_then_does_nothing(repo_copy):
    first = run(["dvc", "repro"], repo_copy)
    for stage in ("fetch", "hydrate", "baseline_eval", "train", "tuned_eval", "publish"):
        assert f"Running stage '{stage}'" in first
    # All tracked or ignored, and only results changed (other floats, in another environment).
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], repo_copy).splitlines()
    assert all(line.startswith(" M ") and line[3:].startswith(("dvc.lock", "reports/")) for line in status), status

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


def test_another_environment_is_compared_statistically_and_passes(repo_copy, committed):
    ok, report = check(committed, repo_copy)
    assert report.startswith("mode: statistical (another environment")
    assert "settings.ATEN_CPU_CAPABILITY: None -> avx2" in report
    assert "outputs in dvc.lock: differ from the committed ones" in report  # other floats indeed
    assert ok, report


def test_forcing_exact_fails_on_other_floats(repo_copy, committed):
    ok, report = check(committed, repo_copy, force="exact")
    assert not ok and "verify: FAILED (exact)" in report


@pytest.mark.parametrize(("where", "metric", "direction"),
                         [("tuned", "exact_match", -1), ("tuned", "answer_loss", 1), ("baseline", "answer_loss", -1)])
def test_a_metric_moved_ten_stderrs_fails_ift_verify_and_is_named(repo_copy, committed, tmp_path, monkeypatch,
                                                                  capsys, where, metric, direction):
    shifted = tmp_path / "committed"
    shutil.copytree(committed, shifted)
    path = shifted / f"reports/{where}/metrics.json"
    metrics = json.loads(path.read_text())
    metrics[metric] += direction * 10 * metrics[f"{metric}_stderr"]
    path.write_text(json.dumps(metrics))

    def reuse_the_build(repo, into, keep_committed, env=None):
        shutil.copytree(repo_copy, into, dirs_exist_ok=True)
        shutil.copytree(shifted, keep_committed, dirs_exist_ok=True)

    monkeypatch.setattr(ift.verify, "rebuild", reuse_the_build)
    with pytest.raises(SystemExit) as exited:
        main(["verify"])
    assert exited.value.code == 1
    assert f"verify: FAILED (statistical): {where}/{metric} beyond the rule" in capsys.readouterr().out


@pytest.mark.parametrize("storage", ["directory", "s3"])
def test_a_teammate_pulls_the_exact_artifacts_and_reruns_nothing(repo_copy, tmp_path, storage, request):
    """README "Share with your team": push from one clone, pull into a fresh one (its own empty
    cache): byte-identical artifacts, and `dvc repro` runs no stage."""
    env = {}
    commands = [["dvc", "remote", "add", "-d", "-f", "team", str(tmp_path / "store")]]
    if storage == "s3":
        server = request.getfixturevalue("s3_server")
        env = server["env"]
        commands = [["dvc", "remote", "add", "-d", "-f", "team", "s3://team-artifacts/store"],
                    ["dvc", "remote", "modify", "team", "endpointurl", server["endpoint"]]]
    for command in commands:
        run(command, repo_copy)
    run(["git", "add", "-A"], repo_copy)
    run(["git", "commit", "-qm", f"results, shared on a {storage} remote"], repo_copy)
    assert commits_naming_the_run(repo_copy)  # the model card leads to the commit with its results
    run(["dvc", "push", "--run-cache"], repo_copy, env=env)

    teammate = tmp_path / "teammate"
    run(["git", "clone", "-q", str(repo_copy), str(teammate)], tmp_path)
    run(["dvc", "pull"], teammate, env=env)
    for out in locked_outputs(repo_copy / "dvc.lock"):
        assert tree_bytes(teammate / out) == tree_bytes(repo_copy / out), out
    assert "up to date" in run(["dvc", "status"], teammate)
    assert "Running stage" not in run(["dvc", "repro"], teammate, env=env)
    # The model artifact (dvc.yaml `artifacts:`), versioned by a GTO tag, as a consumer without the pipeline gets it.
    run(["git", "tag", "-f", "-a", "tuned@v1.0.0", "-m", "The tuned model"], repo_copy)
    run(["dvc", "artifacts", "get", str(repo_copy), "tuned", "-o", str(tmp_path / "shipped")], tmp_path, env=env)
    assert tree_bytes(tmp_path / "shipped") == {path.replace("tuned/", "shipped/", 1): data for path, data
                                                 in tree_bytes(repo_copy / "models/tuned").items()}


def test_a_teammate_gets_an_experiment_from_the_shared_run_cache(repo_copy, tmp_path, s3_server):
    """A parameter combination one clone ran and pushed with `--run-cache` is restored, not
    recomputed, when a teammate runs it with `--pull`: train and tuned_eval come from the
    remote; publish, which only copies, runs."""
    env = s3_server["env"]
    for command in (["dvc", "remote", "add", "-d", "-f", "team", "s3://team-artifacts/run-cache"],
                    ["dvc", "remote", "modify", "team", "endpointurl", s3_server["endpoint"]]):
        run(command, repo_copy)
    run(["git", "add", "-A"], repo_copy)
    run(["git", "commit", "-qm", "results, shared with a run-cache"], repo_copy)
    run(["dvc", "push"], repo_copy, env=env)
    teammate = tmp_path / "teammate"
    run(["git", "clone", "-q", str(repo_copy), str(teammate)], tmp_path)
    run(["dvc", "pull"], teammate, env=env)

    overrides = ["-S", "train.learning_rate=3e-3", "-S", "train.max_steps=40"]  # (not the sweep test's 30)
    mine = run(["dvc", "exp", "run", *overrides], repo_copy)
    assert stages_run(mine) == {"train", "tuned_eval", "publish"}
    assert commits_naming_the_run(repo_copy) == commits_naming_the_run(repo_copy, experiments_only=True)
    run(["dvc", "push", "--run-cache"], repo_copy, env=env)
    theirs = run(["dvc", "exp", "run", "--pull", *overrides], teammate, env=env)
    assert stages_run(theirs) == {"publish"}, theirs
    for stage in ("train", "tuned_eval"):
        assert f"Stage '{stage}' is cached - skipping run" in theirs, theirs
    for out in locked_outputs(repo_copy / "dvc.lock"):
        assert tree_bytes(teammate / out) == tree_bytes(repo_copy / out), out
    restore_committed(repo_copy)


def commits_naming_the_run(repo: Path, experiments_only: bool = False) -> set[str]:
    """The commits (of every ref, or of DVC's experiment refs) that the model card's run key leads to,
    by the command the card gives; at least one."""
    key = re.search(r"Run `([0-9a-f]+)`", (repo / "models/tuned/README.md").read_text()).group(1)
    assert json.loads((repo / "reports/train/run.json").read_text()) == {"run_key": key}
    refs = ["--glob=refs/exps"] if experiments_only else ["--all"]
    commits = set(run_stdout(["git", "log", *refs, "--format=%H", "-S", key, "--", "reports/train/run.json"],
                             repo).split())
    assert commits, key
    return commits


def tree_bytes(path: Path) -> dict[str, bytes]:
    """{relative path: bytes} of a file or of every file under a directory."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): p.read_bytes() for p in files}


def test_plots_render_offline_with_a_colour_and_an_interval_per_model(repo_copy):
    import vl_convert

    from ift.plots_page import VEGA_LITE_VERSION
    from tests.helpers import EXTERNAL_LOAD

    run(["dvc", "plots", "show", "-o", "dvc_plots"], repo_copy)
    page = (repo_copy / "dvc_plots/index.html").read_text(encoding="utf-8")
    assert not EXTERNAL_LOAD.search(page) and "window.vegaEmbed" in page and page.count("vegaEmbed('#") == 2
    shown = subprocess.run(["dvc", "plots", "show", "--json"], cwd=repo_copy, env=user_env(), capture_output=True,
                           text=True, check=True)
    plots = {name: plot["content"] for name, (plot,) in json.loads(shown.stdout)["data"].items()}
    assert set(plots) == {"Training loss", "Baseline vs tuned"}
    # vl-convert runs the same vega libraries the page inlines (no browser on these machines)
    svgs = {name: vl_convert.vegalite_to_svg(spec, vl_version=VEGA_LITE_VERSION) for name, spec in plots.items()}
    assert 'aria-roledescription="line mark"' in svgs["Training loss"]
    bars = svgs["Baseline vs tuned"]
    assert 'fill="#e45756"' in bars and 'fill="#4c78a8"' in bars  # baseline and tuned in their own colours
    assert bars.count('aria-roledescription="rule mark"') == 6  # a 95% interval per metric and model


def test_train_killed_after_a_checkpoint_resumes_to_the_same_model(repo_copy):
    """SIGKILL the train stage after its first checkpoint; the next `dvc repro` resumes and
    finishes with the same weights as the uninterrupted run."""
    import hashlib
    import signal

    import psutil

    weights = repo_copy / "models/tuned/model.safetensors"
    uninterrupted = hashlib.md5(weights.read_bytes()).hexdigest()
    uninterrupted_reports = train_reports(repo_copy)
    with repro_past_first_checkpoint(repo_copy, "--force", "--single-item", "train") as dvc:
        for child in psutil.Process(dvc.pid).children(recursive=True):
            if "stages/train.py" in " ".join(child.cmdline()):
                child.send_signal(signal.SIGKILL)  # as a power loss would: no cleanup at all
        assert dvc.wait(timeout=60) != 0

    # Forced again: these params match dvc.lock, whose outputs DVC would check out of its cache
    # instead (as it would for any combination already run); a new combination resumes unforced
    # (test_two_processes_train_like_one_and_resume_after_a_kill).
    resumed = run(["dvc", "repro", "--force", "--single-item", "train"], repo_copy)
    assert "resuming from checkpoint" in resumed and "(step 100)" in resumed
    assert hashlib.md5(weights.read_bytes()).hexdigest() == uninterrupted
    assert train_reports(repo_copy) == uninterrupted_reports  # metrics and curves too
    assert not list(repo_copy.glob(".checkpoints/train-*"))  # finished runs clean up
    assert not list(repo_copy.glob("models/.tuned.*.tmp"))


def test_two_processes_train_like_one_and_resume_after_a_kill(repo_copy):
    """2 processes x batch 16 against the default 1 x 32 (same seed, same data order): the logged
    losses agree closely and the tuned metrics within their noise. The launcher is SIGKILLed
    after the first checkpoint: its workers stop, and the next `dvc repro` resumes."""
    import signal

    import psutil

    one = logged_losses(repo_copy)
    one_metrics = json.loads((repo_copy / "reports/tuned/metrics.json").read_text())
    run([sys.executable, "-m", "ift.config", "train.num_processes=2", "train.per_device_train_batch_size=16"],
        repo_copy)
    with repro_past_first_checkpoint(repo_copy, "--single-item", "train") as dvc:
        # torchrun gives each worker a LOCAL_RANK; their parent is the stage (a shell may sit above it).
        workers = [p for p in psutil.Process(dvc.pid).children(recursive=True) if "LOCAL_RANK" in p.environ()]
        assert len(workers) == 2, workers
        launcher = workers[0].parent()
        assert all(worker.ppid() == launcher.pid for worker in workers), workers
        launcher.send_signal(signal.SIGKILL)  # the stage itself, as a power loss would: no cleanup at all
        assert dvc.wait(timeout=60) != 0
        psutil.wait_procs(workers, timeout=10)
    assert not any(worker.is_running() for worker in workers), "workers outlived their launcher"

    # An error in the workers (here: a newer checkpoint without weights) is one line, from the launcher.
    work_dir = next(repo_copy.glob(".checkpoints/train-*"))
    (work_dir / "checkpoint-200").mkdir()
    for done in ("trainer_state.json", "rng_state_0.pth", "rng_state_1.pth"):  # complete, but for the weights
        shutil.copy(work_dir / "checkpoint-100" / done, work_dir / "checkpoint-200")
    failed = run(["dvc", "repro"], repo_copy, check=False)
    errors = [line for line in (failed.stdout + failed.stderr).splitlines() if line.startswith("error:")]
    assert failed.returncode != 0 and len(errors) == 1, failed.stderr[-3000:]
    assert "checkpoint-200" in errors[0] and "(training process " in errors[0], errors
    shutil.rmtree(work_dir / "checkpoint-200")

    resumed = run(["dvc", "repro"], repo_copy)
    assert "training in 2 processes under torchrun" in resumed
    assert "resuming from checkpoint" in resumed and "(step 100)" in resumed
    two = logged_losses(repo_copy)
    assert two.keys() == one.keys()
    # The first logged means (steps 1-10, 11-20), before bf16 rounding differences compound:
    for step in sorted(one)[:2]:
        assert abs(two[step] - one[step]) <= 1e-3 * one[step], (step, one[step], two[step])
    two_metrics = json.loads((repo_copy / "reports/tuned/metrics.json").read_text())
    assert abs(two_metrics["exact_match"] - one_metrics["exact_match"]) <= 0.05, (one_metrics, two_metrics)
    assert not list(repo_copy.glob(".checkpoints/train-*")) and not list(repo_copy.glob("models/.tuned.*.tmp"))
    restore_committed(repo_copy)


def test_lora_experiment_gives_a_plain_model_and_its_adapter(repo_copy):
    from transformers import AutoModelForCausalLM

    out = run(["dvc", "exp", "run", "-S", "train.lora.enabled=true"], repo_copy)
    assert "(LoRA adapters)" in out and "training " in out
    tuned = repo_copy / "models/tuned"
    assert (tuned / "adapter/adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(tuned)  # without peft
    assert not any("lora" in name for name, _ in model.named_parameters())
    metrics = {name: json.loads((repo_copy / f"reports/{name}/metrics.json").read_text())
               for name in ("baseline", "tuned")}
    assert metrics["tuned"]["exact_match"] - metrics["baseline"]["exact_match"] >= 0.3, metrics
    restore_committed(repo_copy)


def test_a_queued_sweep_runs_two_at_a_time_and_compares_itself(repo_copy):
    """README's sweep: three queued learning rates, `dvc queue start -j 2`; every experiment
    finishes, the two workers share the cores, and DVC compares them (metrics with standard
    errors, loss curves drawn together)."""
    from benchmarks.pipeline import queue_done, queue_started

    run(["dvc", "exp", "run", "--queue", "-S", "train.learning_rate=3e-4,1e-3,3e-3", "-S", "train.max_steps=30",
         "-S", "eval.limit=200"], repo_copy)  # (short runs: what is tested is the queue)
    with queue_started(repo_copy, user_env(), jobs=2):
        status = queue_done(repo_copy, user_env())
    assert status.count("Success") == 3, status

    shown = json.loads(run_stdout(["dvc", "exp", "show", "--json"], repo_copy))
    sweep = {rev["rev"]: rev["data"] for row in shown for exp in (row.get("experiments") or [])
             for rev in exp["revs"] if rev["data"]["params"]["params.yaml"]["data"]["train"]["max_steps"] == 30}
    rates = sorted(data["params"]["params.yaml"]["data"]["train"]["learning_rate"] for data in sweep.values())
    assert rates == [3e-4, 1e-3, 3e-3], sweep.keys()
    for data in sweep.values():
        assert {"exact_match", "exact_match_stderr"} <= set(data["metrics"]["reports/tuned/metrics.json"]["data"])

    def train_threads(sha: str) -> int:  # from the experiment's environment record
        return json.loads(run_stdout(["git", "show", f"{sha}:reports/environment/train.json"], repo_copy))["threads"]

    import torch

    alone = torch.get_num_threads()
    shared = [train_threads(sha) for sha in sweep]
    assert sorted(shared)[:2] == [max(1, alone // 2)] * 2, shared  # the two that ran side by side

    curves = json.loads(run_stdout(["dvc", "plots", "diff", *sweep, "--json"], repo_copy))
    rows = curves["data"]["Training loss"][0]["content"]["data"]["values"]
    assert {row["rev"] for row in rows} >= set(sweep)


def run_stdout(cmd: list[str], cwd: Path) -> str:
    """A command's standard output alone (for JSON), run as a user would."""
    return subprocess.run(cmd, cwd=cwd, env=user_env(), capture_output=True, text=True, check=True).stdout


def logged_losses(root: Path) -> dict[int, float]:
    """{step: logged training loss} from the train stage's dvclive curve."""
    rows = (root / "reports/train/plots/metrics/loss.tsv").read_text().splitlines()[1:]
    return {int(step): float(loss) for step, loss in (row.split("\t") for row in rows if row)}


def restore_committed(root: Path) -> None:
    """Back to the committed params and results (outputs from DVC's cache), for the tests after."""
    run(["git", "checkout", "--", "."], root)
    run(["dvc", "checkout", "--force"], root)


def train_reports(root: Path) -> dict[str, str]:
    """{path: text} of the train stage's results (training metrics, dvclive curves, run.json)."""
    return {str(p.relative_to(root)): p.read_text() for p in sorted((root / "results/train").rglob("*")) if p.is_file()}


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def test_ift_ask_answers_with_the_tuned_model(repo_copy):
    result = run(["ift", "ask", "How many words are in the list?", "--input", "cat dog red"], repo_copy, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].strip(), result.stdout  # the answer alone on stdout (logs: stderr)


def test_a_change_to_the_training_loss_makes_only_train_stale(repo_copy):
    trainer = repo_copy / "src/ift/trainer.py"
    code = trainer.read_text()
    trainer.write_text(code + "\n# an edit\n")
    try:
        status = run(["dvc", "status"], repo_copy)
    finally:
        trainer.write_text(code)
    stale = {line.strip().rstrip(":") for line in status.splitlines() if line and not line.startswith(("\t", " "))}
    assert stale == {"train"}, status


def test_exp_run_reruns_only_what_depends_on_the_change(repo_copy):
    # (eval.limit keeps both runs short: the workspace keeps it for the second)
    eval_change = run(["dvc", "exp", "run", "-S", "eval.max_new_tokens=7", "-S", "eval.limit=100"], repo_copy)
    assert stages_run(eval_change) == {"baseline_eval", "tuned_eval", "publish"}
    train_change = run(["dvc", "exp", "run", "-S", "train.max_steps=5"], repo_copy)
    assert stages_run(train_change) == {"train", "tuned_eval", "publish"}


def test_pythia_like_model_and_company_csv_end_to_end(repo_copy, tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.helpers import save_pythia_like

    if torch.cpu._is_amx_tile_supported():
        # torch's bf16 flash attention (train=pythia-70m: sdpa) packs for AMX from the AVX-512 kernels
        # only: under ATen's AVX2 ones it fails ("pack_vnni2 is only supported when avx512 is supported").
        monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    model_dir = save_pythia_like(tmp_path / "pythia-like")
    rows = ["Customer Question,Agent Answer"] + [
        f'"How do I reset {{device_{i}}}? ### Response: é",Hold the {{button}} for {i} seconds.'
        for i in range(30)]
    csv = tmp_path / "company data.csv"
    csv.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode("utf-8") + b"\r\n")
    run(["dvc", "exp", "run", "-S", "model=local", "-S", f"model.name_or_path='{model_dir}'", "-S", "train=pythia-70m",
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

    # Local inputs are DVC dependencies of fetch: an edit to either is seen, and reruns fetch.
    assert "up to date" in run(["dvc", "status"], repo_copy)
    csv.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows[:21]).encode("utf-8") + b"\r\n")  # 30 rows -> 20
    status = run(["dvc", "status", "fetch"], repo_copy)
    assert "fetch" in status and "modified" in status and str(csv) in status, status
    assert stages_run(run(["dvc", "repro", "fetch"], repo_copy)) == {"fetch"}
    assert json.loads((repo_copy / "data/raw/metadata.json").read_text())["counts"]["train"] < 27
    (model_dir / "NOTES.md").write_text("a file added to the model directory\n")
    status = run(["dvc", "status", "fetch"], repo_copy)
    assert "fetch" in status and str(model_dir) in status, status


def test_a_typo_in_a_key_fails_the_first_stage_to_run_and_leaves_dvc_lock(repo_copy):
    lock = (repo_copy / "dvc.lock").read_bytes()
    failed = run(["dvc", "exp", "run", "-S", "+train.learnign_rate=1e-3"], repo_copy, check=False)
    assert failed.returncode != 0
    assert "train.learnign_rate" in failed.stderr + failed.stdout
    assert (repo_copy / "dvc.lock").read_bytes() == lock


def test_a_dvc_added_data_file_works_in_a_queued_experiment(tmp_path):
    """Queued experiments run in a copy with tracked files only: the README's way (dvc add) works there."""
    from benchmarks.pipeline import queue_done, queue_started

    repo = copy_repo(tmp_path)
    rows = ["question,answer"] + [f"What is {i} plus one?,{i + 1}" for i in range(60)]
    (repo / "qa.csv").write_text("\n".join(rows) + "\n")
    run(["dvc", "add", "qa.csv"], repo)
    run(["git", "add", "qa.csv.dvc", ".gitignore"], repo)
    run(["git", "commit", "-qm", "data"], repo)
    run(["dvc", "exp", "run", "--queue", "-S", "data=local", "-S", "data.path=qa.csv",
         "-S", "data.fields.instruction=question", "-S", "data.fields.input=null", "-S", "data.fields.output=answer",
         "-S", "model.tiny.pretrain_steps=20", "-S", "train.max_steps=3"], repo)
    with queue_started(repo, user_env(), jobs=1):
        status = queue_done(repo, user_env())
    assert status.count("Success") == 1, status
    shown = subprocess.run(["dvc", "exp", "show", "--json"], cwd=repo, env=user_env(), capture_output=True,
                           text=True, check=True)
    experiments = [exp for row in json.loads(shown.stdout) for exp in (row.get("experiments") or [])]
    done = [rev["data"] for exp in experiments for rev in exp["revs"]]
    assert [d["params"]["params.yaml"]["data"]["data"]["path"] for d in done] == ["qa.csv"]
    assert done[0]["metrics"]["reports/tuned/metrics.json"]["data"]["n_examples"] == 6  # 60 rows, test_size 0.1
