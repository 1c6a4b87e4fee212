import json
import subprocess
import sys

import pytest
import yaml

from benchmarks.run import refuse_uncommitted
from ift.errors import UserError
from ift.io import dumps_json
from ift.verify import (
    ENVIRONMENT_DIR,
    GUARANTEED_SHIFT_STDERRS,
    SPREAD_FILE,
    _numbers,
    check,
    commit_all,
    compare_metrics,
    export_head,
    format_table,
    read_metrics,
    stale_reasons,
    statistical_row,
    subprocess_env,
)
from tests.helpers import ROOT


def write(root, name, data, environment=None, outputs=None):
    """A report dir's metrics.json under `root`, the stages' environment records, and a dvc.lock
    listing those records' hashes and `outputs` ({path: md5})."""
    import hashlib

    path = root / "reports" / name / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    locked = dict(outputs or {"models/tuned": "abc"})
    for stage in ("train", "tuned_eval"):
        env = root / ENVIRONMENT_DIR / f"{stage}.json"
        env.parent.mkdir(parents=True, exist_ok=True)
        env.write_text(dumps_json(environment or {"cpu": {"model": "A"}, "threads": 2}))  # as the stages do
        locked[f"{ENVIRONMENT_DIR}/{stage}.json"] = hashlib.md5(env.read_bytes()).hexdigest()
    (root / "dvc.lock").write_text(yaml.safe_dump(
        {"stages": {"all": {"outs": [{"path": p, "md5": md5} for p, md5 in locked.items()]}}}))


TUNED = {"exact_match": 0.8, "exact_match_stderr": 0.01, "bleu": 70.0, "bleu_stderr": 0.5, "n_examples": 2000}
TRAIN = {"loss": 0.2, "grad_norm": 3.0, "learning_rate": 2.4e-06, "step": 339,
         "smoothed": {"window": 5, "loss": 0.2, "grad_norm": 3.0}}


def rows_by_key(rows):
    return {f"{row.where}/{row.metric}": row for row in rows}


def test_numbers_flattens_nested_numeric_leaves():
    assert _numbers({"a": 1, "b": {"c": 2.5, "d": "x"}, "e": True}) == {"a": 1.0, "b.c": 2.5}


def test_exact_mode_within_and_beyond_tolerance():
    committed = {"tuned": TUNED}
    reproduced = {"tuned": {**TUNED, "exact_match": 0.8 + 1e-9, "bleu": 70.5}}
    rows = rows_by_key(compare_metrics(committed, reproduced, "exact"))
    assert rows["tuned/exact_match"].ok and rows["tuned/n_examples"].ok
    assert not rows["tuned/bleu"].ok
    assert "FAILED" in format_table(list(rows.values()))
    assert all(row.ok for row in compare_metrics(committed, reproduced, "tolerance", tolerance=1.0))


def test_statistical_mode_accepts_noise_and_names_a_shift_of_ten_stderrs():
    committed = {"tuned": TUNED}
    spread = {"tuned": {"exact_match": 0.005, "bleu": 0.4}}
    within = {"tuned": {**TUNED, "exact_match": 0.82, "bleu": 69.0, "exact_match_stderr": 0.02}}
    rows = rows_by_key(compare_metrics(committed, within, "statistical", spread=spread))
    assert all(row.ok for row in rows.values())
    # sigma = sqrt(0.01^2 + 2 x 0.005^2) = 0.01225: 0.02 is 1.63 sigma
    assert rows["tuned/exact_match"].margin == "|d| = 1.63 sigma"
    assert rows["tuned/exact_match_stderr"].rule == "not compared"
    shifted = {"tuned": {**TUNED, "exact_match": 0.8 + 10 * 0.01}}
    rows = rows_by_key(compare_metrics(committed, shifted, "statistical", spread=spread))
    assert [key for key, row in rows.items() if not row.ok] == ["tuned/exact_match"]
    # without a measured spread, the test-set noise alone
    rows = rows_by_key(compare_metrics(committed, within, "statistical"))
    assert rows["tuned/exact_match"].ok and "no spread measured" in rows["tuned/exact_match"].rule


def test_the_committed_noise_lets_no_committed_metric_move_ten_stderrs_unseen():
    """The check CI must keep: with the committed spread, a 10-stderr shift of any eval metric
    (either way) fails. It fails itself when a recipe too unstable across environments (its
    run-to-run spread over ~2.3 stderr) is committed."""
    from ift.statistics import EVAL_METRICS, stderr_key

    committed = read_metrics(ROOT)
    spread = json.loads((ROOT / SPREAD_FILE).read_text())["std"]
    shifted = []
    for where, metrics in committed.items():
        for key in EVAL_METRICS:
            se = metrics.get(stderr_key(key), 0.0)
            if key not in metrics or se == 0:  # every example scored alike: nothing to shift by
                continue
            for direction in (-1, 1):
                shift = direction * GUARANTEED_SHIFT_STDERRS * se
                row = statistical_row(where, key, metrics, metrics[key] + shift, spread[where])
                assert not row.ok, f"{where}/{key}: a {GUARANTEED_SHIFT_STDERRS:g}-stderr shift passes ({row.margin})"
                shifted.append(f"{where}/{key}")
    assert {"tuned/exact_match", "tuned/bleu", "baseline/answer_loss"} <= set(shifted)


def test_statistical_mode_compares_training_by_smoothed_curves_and_counts_exactly():
    committed = {"train": _numbers(TRAIN)}
    noisy_end = _numbers({**TRAIN, "loss": 0.5, "grad_norm": 9.0, "smoothed": {**TRAIN["smoothed"], "loss": 0.22}})
    rows = rows_by_key(compare_metrics(committed, {"train": noisy_end}, "statistical"))
    assert all(row.ok for row in rows.values())
    assert rows["train/loss"].rule == "not compared"
    assert rows["train/smoothed.loss"].margin == "|d| = 10.0%"
    # a spread wider than the 25% gives the wider limit; a narrower one leaves the 25%
    with_spread = compare_metrics(committed, {"train": noisy_end}, "statistical",
                                  spread={"train": {"smoothed.loss": 0.02}})
    assert rows_by_key(with_spread)["train/smoothed.loss"].margin == "|d| = 0.71 sigma"  # 0.02 / (sqrt(2) x 0.02)
    narrow = compare_metrics(committed, {"train": noisy_end}, "statistical", spread={"train": {"smoothed.loss": 0.001}})
    assert rows_by_key(narrow)["train/smoothed.loss"].rule == "|d| <= 25%"
    moved = _numbers({**TRAIN, "step": 340, "smoothed": {**TRAIN["smoothed"], "loss": 0.3}})
    rows = rows_by_key(compare_metrics(committed, {"train": moved}, "statistical"))
    assert sorted(key for key, row in rows.items() if not row.ok) == ["train/smoothed.loss", "train/step"]


def test_missing_reproduced_metric_fails():
    for mode in ("exact", "statistical"):
        rows = compare_metrics({"baseline": {"exact_match": 0.1, "exact_match_stderr": 0.01}}, {}, mode)
        assert not rows[0].ok and rows[0].reproduced is None


def test_check_picks_the_mode_from_the_recorded_environments(tmp_path):
    committed, same, other = tmp_path / "c", tmp_path / "s", tmp_path / "o"
    write(committed, "tuned", TUNED)
    write(same, "tuned", TUNED)
    write(other, "tuned", {**TUNED, "exact_match": 0.81}, environment={"cpu": {"model": "B"}, "threads": 2})
    record = json.loads((committed / ENVIRONMENT_DIR / "train.json").read_text())
    (committed / "reports/spread.json").write_text(json.dumps({"std": {}, "environment": {"train": record}}))
    ok, report = check(committed, same)
    assert ok and report.startswith("mode: exact") and "byte-identical" in report
    ok, report = check(committed, other)
    assert ok and report.startswith("mode: statistical") and "cpu.model: A -> B" in report
    ok, report = check(committed, other, force="exact")
    assert not ok and report.startswith("mode: exact (--exact") and "FAILED (exact): tuned/exact_match" in report
    ok, report = check(committed, other, tolerance=0.05)
    assert ok and report.startswith("mode: tolerance")


def test_exact_mode_demands_byte_identical_outputs(tmp_path):
    committed, reproduced = tmp_path / "c", tmp_path / "r"
    write(committed, "tuned", TUNED)
    write(reproduced, "tuned", TUNED, outputs={"models/tuned": "def"})
    ok, report = check(committed, reproduced)
    assert not ok and "differ from the committed ones: models/tuned" in report
    assert check(committed, reproduced, tolerance=1e-6)[0]  # an explicit tolerance looks at the metrics only


def _git_repo(root, files):
    """A git repo at `root` with `files` ({relative path: text}) committed."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    commit_all(root, "files")


def _built_dvc_repo(root, files):
    """`_git_repo` with the project's conf/ and params.yaml, made a DVC project, its pipeline run once."""
    import shutil

    shutil.copytree(ROOT / "conf", root / "conf")
    shutil.copy2(ROOT / "params.yaml", root / "params.yaml")
    _git_repo(root, files)
    for cmd in (["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"], ["dvc", "repro", "-q"]):
        subprocess.run(cmd, cwd=root, env=subprocess_env(root), check=True, capture_output=True)


@pytest.mark.slow
def test_the_rebuild_imports_the_copys_own_code_not_the_checkouts(tmp_path):
    repo, copy = tmp_path / "repo", tmp_path / "copy"
    repo.mkdir(), copy.mkdir()
    _git_repo(repo, {"src/ift/__init__.py": "MARK = 'committed'\n"})
    export_head(repo, copy)
    out = subprocess.run([sys.executable, "-c", "import ift; print(ift.MARK, ift.__file__)"], cwd=copy,
                         env=subprocess_env(copy), capture_output=True, text=True, check=True).stdout.split()
    assert out == ["committed", str(copy / "src/ift/__init__.py")]


@pytest.mark.slow
def test_stale_reasons_name_a_changed_dependency(tmp_path):
    _built_dvc_repo(tmp_path, {"a.txt": "a\n", "dvc.yaml": "stages:\n  copy:\n    cmd: cp a.txt b.txt\n"
                                                           "    deps: [a.txt]\n    outs: [b.txt]\n"})
    assert stale_reasons(tmp_path) == []
    (tmp_path / "a.txt").write_text("changed\n")
    assert stale_reasons(tmp_path) == ["copy: changed deps ['a.txt']"]


@pytest.mark.slow
def test_rebuild_runs_head_from_scratch_in_the_environment_given_and_keeps_the_committed_results(tmp_path):
    from ift.verify import rebuild

    repo, workdir, committed = tmp_path / "repo", tmp_path / "w", tmp_path / "c"
    for directory in (repo, workdir, committed):
        directory.mkdir()
    # Like the pipeline: the metrics are in Git, the model is a cached output that a fresh export lacks.
    _built_dvc_repo(repo, {"score.py": "import json, os, pathlib\npathlib.Path('model.txt').write_text('weights')\n"
                                       "print(json.dumps({'mark': os.environ.get('MARK', 'none')}))\n",
                           "dvc.yaml": "stages:\n  score:\n    cmd: python score.py > reports/tuned/metrics.json\n"
                                       "    deps: [score.py]\n    outs: [model.txt]\n"
                                       "    metrics: [reports/tuned/metrics.json: {cache: false}]\n",
                           "reports/tuned/.gitkeep": ""})
    commit_all(repo, "results")
    rebuild(repo, workdir, committed, env={"MARK": "rebuilt"})
    assert json.loads((committed / "reports/tuned/metrics.json").read_text()) == {"mark": "none"}
    assert json.loads((workdir / "reports/tuned/metrics.json").read_text()) == {"mark": "rebuilt"}
    assert (committed / "dvc.lock").read_text() == (repo / "dvc.lock").read_text()


def test_bench_refuses_uncommitted_measured_code(tmp_path, monkeypatch):
    import ift

    _git_repo(tmp_path, {"src/ift/__init__.py": "", "reports/bench.md": "old\n"})
    with pytest.raises(UserError, match="ift is imported from .*install this checkout"):
        refuse_uncommitted(tmp_path)  # the code this process runs is another checkout's
    monkeypatch.setattr(ift, "__file__", str(tmp_path / "src/ift/__init__.py"))
    (tmp_path / "reports/bench.md").write_text("new\n")  # a previous bench's output: fine
    refuse_uncommitted(tmp_path)
    (tmp_path / "src/ift/__init__.py").write_text("a = 2\n")
    for where in (tmp_path, tmp_path / "src"):  # from a subdirectory too
        with pytest.raises(UserError, match=r"src/ift/__init__.py.*commit or stash"):
            refuse_uncommitted(where)


@pytest.mark.slow
def test_verify_refuses_a_stale_lock_before_rebuilding(tmp_path):
    from ift.verify import rebuild
    from tests.helpers import copy_repo

    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repo(repo)
    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(params.replace("\n  learning_rate: 0.001\n", "\n  learning_rate: 0.002\n"))
    commit_all(repo, "params changed without dvc repro")
    (tmp_path / "w").mkdir(), (tmp_path / "c").mkdir()
    with pytest.raises(UserError, match=r"dvc.lock is stale .*params.yaml is not the composition.*"
                                        r"train: changed params \['train'\]"):
        rebuild(repo, tmp_path / "w", tmp_path / "c")


@pytest.mark.slow
def test_stale_reasons_name_params_changed_in_conf_and_recomposed(tmp_path):
    from ift.config import write_params
    from tests.helpers import copy_repo

    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repo(repo)
    assert stale_reasons(repo) == []
    preset = repo / "conf/eval/default.yaml"
    preset.write_text(preset.read_text().replace("max_new_tokens: null", "max_new_tokens: 7"))
    write_params([], repo / "params.yaml", repo / "conf")
    assert stale_reasons(repo) == ["baseline_eval: changed params ['eval']", "tuned_eval: changed params ['eval']"]


def test_statistical_mode_demands_the_same_data(tmp_path):
    committed, other = tmp_path / "c", tmp_path / "o"
    write(committed, "tuned", TUNED, outputs={"data/raw": "aaa"})
    write(other, "tuned", TUNED, environment={"cpu": {"model": "B"}, "threads": 2}, outputs={"data/raw": "bbb"})
    ok, report = check(committed, other)
    assert not ok and "outputs that no float rounding decides differ: data/raw" in report


def test_an_eval_metric_without_a_stderr_gets_the_noise_rule():
    committed = {"tuned": {"exact_match": 1.0, "exact_match_stderr": None, "n_examples": 1}}
    row = rows_by_key(compare_metrics({"tuned": _numbers(committed["tuned"])}, {"tuned": {"exact_match": 0.0}},
                                      "statistical"))["tuned/exact_match"]
    assert row.rule.startswith("|d| <= 3 sigma") and not row.ok  # 1 -> 0 on one example: beyond the noise


def test_a_fresh_clone_names_differences_from_the_spreads_record(tmp_path):
    import shutil

    committed, other = tmp_path / "c", tmp_path / "o"
    write(committed, "tuned", TUNED)
    write(other, "tuned", TUNED, environment={"cpu": {"model": "B"}, "threads": 2})
    record = json.loads((committed / ENVIRONMENT_DIR / "train.json").read_text())
    shutil.rmtree(committed / ENVIRONMENT_DIR)  # DVC-cached: not in a fresh clone
    (committed / "reports/spread.json").write_text(json.dumps({"std": {}, "environment": {"train": record}}))
    ok, report = check(committed, other)
    assert ok and report.startswith("mode: statistical") and "train: cpu.model: A -> B" in report
    assert check(committed, committed)[1].startswith("mode: exact")  # equal hashes in dvc.lock suffice


def test_a_spread_measured_for_other_results_is_flagged(tmp_path):
    committed, other = tmp_path / "c", tmp_path / "o"
    write(committed, "tuned", TUNED)
    write(other, "tuned", TUNED, environment={"cpu": {"model": "B"}, "threads": 2})
    runs = {"unperturbed": {"tuned": {**TUNED, "exact_match": 0.7}}}
    (committed / "reports/spread.json").write_text(json.dumps({"std": {"tuned": {"exact_match": 0.01}},
                                                              "runs": runs}))
    ok, report = check(committed, other)
    assert ok and "warning: reports/spread.json was measured for other results" in report
    runs["unperturbed"]["tuned"]["exact_match"] = TUNED["exact_match"]
    (committed / "reports/spread.json").write_text(json.dumps({"std": {}, "runs": runs}))
    assert "warning" not in check(committed, other)[1]


def test_verify_here_takes_only_results_as_changed(tmp_path):
    """`ift verify --here` compares this checkout's results with HEAD's: rebuilt results may
    differ from HEAD, code or params may not (they would make other results)."""
    from ift.verify import refuse_changed_code

    _git_repo(tmp_path, {"src/ift/training.py": "a = 1\n", "params.yaml": "seed: 0\n", "dvc.lock": "old\n",
                         "reports/tuned/metrics.json": "{}\n"})
    (tmp_path / "dvc.lock").write_text("rebuilt\n")
    (tmp_path / "reports/tuned/metrics.json").write_text('{"exact_match": 0.5}\n')
    refuse_changed_code(tmp_path)
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    with pytest.raises(UserError, match=r"params.yaml differ from HEAD.*commit or stash"):
        refuse_changed_code(tmp_path)
