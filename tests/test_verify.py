import json
import subprocess
import sys

import pytest

from ift.bench import refuse_uncommitted
from ift.errors import UserError
from ift.verify import _numbers, commit_all, compare_metrics, export_head, format_table, stale_reasons, subprocess_env
from tests.conftest import ROOT


def write(root, name, data):
    path = root / "reports" / name / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))


def test_numbers_flattens_nested_numeric_leaves():
    assert _numbers({"a": 1, "b": {"c": 2.5, "d": "x"}, "e": True}) == {"a": 1.0, "b.c": 2.5}


def test_compare_within_and_beyond_tolerance(tmp_path):
    committed, reproduced = tmp_path / "c", tmp_path / "r"
    write(committed, "tuned", {"exact_match": 0.8, "bleu": 70.0, "n_examples": 400})
    write(reproduced, "tuned", {"exact_match": 0.8 + 1e-9, "bleu": 70.5, "n_examples": 400})
    rows, ok = compare_metrics(committed, reproduced, tolerance=1e-6)
    assert not ok
    verdict = {key: row_ok for _, key, _, _, _, row_ok in rows}
    assert verdict == {"exact_match": True, "bleu": False, "n_examples": True}
    assert "<-- differs" in format_table(rows, 1e-6)
    _, ok = compare_metrics(committed, reproduced, tolerance=1.0)
    assert ok


def test_missing_reproduced_file_fails(tmp_path):
    write(tmp_path / "c", "baseline", {"exact_match": 0.1})
    rows, ok = compare_metrics(tmp_path / "c", tmp_path / "r", tolerance=1.0)
    assert not ok and rows[0][3] is None


def _git_repo(root, files):
    """A git repo at `root` with `files` ({relative path: text}) committed."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    commit_all(root, "files")


def test_the_rebuild_imports_the_copys_own_code_not_the_checkouts(tmp_path):
    repo, copy = tmp_path / "repo", tmp_path / "copy"
    repo.mkdir(), copy.mkdir()
    _git_repo(repo, {"src/ift/__init__.py": "MARK = 'committed'\n"})
    export_head(repo, copy)
    out = subprocess.run([sys.executable, "-c", "import ift; print(ift.MARK, ift.__file__)"], cwd=copy,
                         env=subprocess_env(copy), capture_output=True, text=True, check=True).stdout.split()
    assert out == ["committed", str(copy / "src/ift/__init__.py")]


def test_stale_reasons_name_a_changed_dependency(tmp_path):
    import shutil

    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    shutil.copy2(ROOT / "params.yaml", tmp_path / "params.yaml")
    _git_repo(tmp_path, {"a.txt": "a\n", "dvc.yaml": "stages:\n  copy:\n    cmd: cp a.txt b.txt\n"
                                                     "    deps: [a.txt]\n    outs: [b.txt]\n"})
    for cmd in (["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"], ["dvc", "repro", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, env=subprocess_env(tmp_path), check=True, capture_output=True)
    assert stale_reasons(tmp_path) == []
    (tmp_path / "a.txt").write_text("changed\n")
    assert stale_reasons(tmp_path) == ["copy: changed deps ['a.txt']"]


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
