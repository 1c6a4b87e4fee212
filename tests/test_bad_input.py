"""Bad input through the real commands: `python -m ift.config ... && dvc repro` in a copy of
the repo. Each case is refused with one clear line, a non-zero exit, no traceback, and
dvc.lock untouched."""

import json
from pathlib import Path

import pytest

from tests.helpers import copy_repo, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

GOOD = [{"instruction": f"Say {i}", "input": "", "output": f"{i}"} for i in range(20)]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return copy_repo(tmp_path_factory.mktemp("bad-input"))


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def refused(repo: Path, overrides: list[str], match: str) -> str:
    """Run config + repro; assert the refusal; return the error line."""
    lock_before = (repo / "dvc.lock").read_bytes()
    config = run(["python", "-m", "ift.config", *overrides], repo, check=False)
    result = config if config.returncode != 0 else run(["dvc", "repro"], repo, check=False)
    output = result.stdout + result.stderr
    run(["git", "checkout", "-q", "params.yaml"], repo)
    assert result.returncode != 0, output[-2000:]
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output[-2000:]
    assert match in errors[0], errors[0]
    assert (repo / "dvc.lock").read_bytes() == lock_before
    return errors[0]


CASES = {
    "malformed_line": (b'{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": \n', "line 2"),
    "empty_file": (b"", "is empty"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00garbage", "not UTF-8"),
    "list_value": (jsonl(GOOD + [{"instruction": "x", "output": ["a", "b"]}]), "holds list"),
    "object_value": (jsonl(GOOD + [{"instruction": {"a": 1}, "output": "b"}]), "holds dict"),
    "all_answers_empty": (jsonl([{"instruction": f"q{i}", "input": "", "output": " "} for i in range(20)]), "none of"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_data_file_is_refused(repo, tmp_path, case):
    content, match = CASES[case]
    path = tmp_path / f"{case}.jsonl"
    path.write_bytes(content)
    refused(repo, ["data=local", f"data.path={path}", "model.tiny.pretrain_steps=1"], match)


def test_missing_column_lists_columns_and_key(repo, tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("Question,Answer\n" + "".join(f"q{i},a{i}\n" for i in range(20)))
    line = refused(repo, ["data=local", f"data.path={path}"], "no column 'instruction'")
    assert "Question, Answer" in line and "data.fields.instruction" in line


def test_missing_path(repo, tmp_path):
    refused(repo, ["data=local", f"data.path={tmp_path / 'nope.jsonl'}"], "does not exist")


@pytest.mark.parametrize("overrides, match", [
    (["model=pythia-7b"], "pythia-70m"),  # unknown preset: the choices are listed
    (["train.learning_rate=fast"], "train.learning_rate"),
    (["train.learning_rate=0"], "train.learning_rate"),
    (["data.test_size=1.5"], "data.test_size"),
    (["train.per_device_train_batch_size=0"], "train.per_device_train_batch_size"),
])
def test_bad_params_are_refused(repo, overrides, match):
    refused(repo, overrides, match)


def test_wrong_type_through_dvc_exp_run_fails_at_stage_start(repo):
    lock_before = (repo / "dvc.lock").read_bytes()
    result = run(["dvc", "exp", "run", "-S", "train.learning_rate=fast"], repo, check=False)
    output = result.stdout + result.stderr
    run(["git", "checkout", "-q", "params.yaml"], repo)
    assert result.returncode != 0 and "Traceback" not in output
    assert "train.learning_rate" in output
    assert (repo / "dvc.lock").read_bytes() == lock_before


def test_every_example_too_long(repo, tmp_path):
    """train.max_length is read by train alone (stage deps follow the data flow), so the refusal
    comes from train; the stages before it did their work, and train's lock entry is untouched."""
    import yaml

    path = tmp_path / "long.jsonl"
    path.write_bytes(jsonl(GOOD))
    train_before = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["train"]
    run(["python", "-m", "ift.config", "data=local", f"data.path={path}", "train.max_length=8",
         "model.tiny.pretrain_steps=1"], repo)
    result = run(["dvc", "repro"], repo, check=False)
    output = result.stdout + result.stderr
    train_after = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["train"]
    run(["git", "checkout", "-q", "params.yaml", "dvc.lock"], repo)
    assert result.returncode != 0 and "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "train.max_length=8" in errors[0] and "all 18 examples" in errors[0], output[-2000:]
    assert "failed to reproduce 'train'" in output
    assert train_after == train_before
