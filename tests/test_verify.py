import json

from ift.verify import _numbers, compare_metrics, format_table


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
