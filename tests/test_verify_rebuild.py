"""`ift verify` against a real rebuild of the committed pipeline in another environment.

ATEN_CPU_CAPABILITY=avx2 makes torch run its AVX2 vector kernels, and MKL_CBWR=COMPATIBLE
MKL its generic fp32 matrix multiplies (MKL takes one path for every other value on this
machine's CPU): other floats from the same code, as on another CPU type (minutes). The
setting is none of the builds `ift spread` measured, so the rebuild is a new environment.
"""

import json
import shutil

import pytest

import ift.verify
from ift.cli import main
from ift.verify import check, rebuild
from tests.helpers import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
OTHER_ENVIRONMENT = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE"}


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    """(the rebuild of HEAD under OTHER_ENVIRONMENT, HEAD's committed results)."""
    workdir, committed = tmp_path_factory.mktemp("rebuild"), tmp_path_factory.mktemp("committed")
    rebuild(ROOT, workdir, committed, env=OTHER_ENVIRONMENT)
    return workdir, committed


def test_another_environment_is_compared_statistically_and_passes(rebuilt):
    workdir, committed = rebuilt
    ok, report = check(committed, workdir)
    assert report.startswith("mode: statistical (another environment")
    assert "settings.ATEN_CPU_CAPABILITY: None -> avx2" in report and "settings.MKL_CBWR: None -> COMPATIBLE" in report
    assert "outputs in dvc.lock: differ from the committed ones" in report  # other floats indeed
    assert ok, report


def test_forcing_exact_fails_on_other_floats(rebuilt):
    workdir, committed = rebuilt
    ok, report = check(committed, workdir, force="exact")
    assert not ok and "verify: FAILED (exact)" in report


@pytest.mark.parametrize(("where", "metric", "direction"),
                         [("tuned", "exact_match", -1), ("tuned", "answer_loss", 1), ("baseline", "answer_loss", -1)])
def test_a_metric_moved_ten_stderrs_fails_ift_verify_and_is_named(rebuilt, tmp_path, monkeypatch, capsys,
                                                                  where, metric, direction):
    workdir, committed = rebuilt
    shifted = tmp_path / "committed"
    shutil.copytree(committed, shifted)
    path = shifted / f"reports/{where}/metrics.json"
    metrics = json.loads(path.read_text())
    metrics[metric] += direction * 10 * metrics[f"{metric}_stderr"]
    path.write_text(json.dumps(metrics))

    def reuse_the_rebuild(repo, into, keep_committed, env=None):
        shutil.copytree(workdir, into, dirs_exist_ok=True)
        shutil.copytree(shifted, keep_committed, dirs_exist_ok=True)

    monkeypatch.setattr(ift.verify, "rebuild", reuse_the_rebuild)
    with pytest.raises(SystemExit) as exited:
        main(["verify"])
    assert exited.value.code == 1
    assert f"verify: FAILED (statistical): {where}/{metric} beyond the rule" in capsys.readouterr().out
