"""stages/publish.py: results/X -> reports/X, file by file, and nothing else."""

import subprocess
import sys

from tests.helpers import ROOT

SCRIPT = ROOT / "stages/publish.py"


def publish(cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "results", "reports"], cwd=cwd, capture_output=True, text=True)


def test_every_result_lands_at_the_same_path_and_hidden_files_stay(tmp_path):
    files = {"tuned/metrics.json": '{"exact_match": 0.5}\n', "train/plots/metrics/loss.tsv": "step\tloss\n1\t2.0\n",
             "comparison.md": "# report\n"}
    for name, text in {**files, ".gitignore": "/tuned\n", "tuned/.metrics.json.123.x.tmp": "half"}.items():
        (tmp_path / "results" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "results" / name).write_text(text)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/spread.json").write_text("{}\n")  # reports/ holds more than the copies: kept

    result = publish(tmp_path)
    assert result.returncode == 0, result.stderr
    published = {str(p.relative_to(tmp_path / "reports")): p.read_text()
                 for p in (tmp_path / "reports").rglob("*") if p.is_file()}
    assert published == {**files, "spread.json": "{}\n"}


def test_no_results_is_one_line_and_a_failure(tmp_path):
    (tmp_path / "results").mkdir()
    result = publish(tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == ["error: results/ holds no results: run `dvc repro` to build them"]
