import json

import pytest

from ift.io import atomic_dir, read_jsonl, write_json, write_jsonl


def test_atomic_dir_keeps_the_old_tree_when_the_block_fails(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("half-written")
        raise RuntimeError("crash")
    assert (target / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary left behind


def test_atomic_dir_replaces_and_sweeps_leftovers_of_killed_runs(tmp_path):
    target = tmp_path / "out"
    (tmp_path / ".out.abc123.tmp").mkdir()  # what a SIGKILL leaves behind
    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (target / "b.txt").read_text() == "new"


def test_write_json_and_jsonl_roundtrip(tmp_path):
    rows = [{"input": "{braces} é", "output": "日本"}, {"input": "", "output": "x"}]
    assert write_jsonl(tmp_path / "d.jsonl", rows) == 2
    assert read_jsonl(tmp_path / "d.jsonl") == rows
    write_json(tmp_path / "m.json", {"a": 1})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1}


def test_outputs_get_the_usual_permissions_not_owner_only(tmp_path):
    import os

    old_umask = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
        with atomic_dir(tmp_path / "model") as tmp:
            (tmp / "w.bin").write_bytes(b"x")
    finally:
        os.umask(old_umask)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o755


def test_a_tree_moved_aside_by_a_killed_swap_comes_back(tmp_path):
    (tmp_path / ".out.old-4242").mkdir()  # killed between moving the old tree aside and the new in
    (tmp_path / ".out.old-4242" / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "out"):
        raise RuntimeError("this run fails too")
    assert (tmp_path / "out" / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_killed_file_write_is_swept_by_the_next(tmp_path):
    (tmp_path / ".m.json.abc123.tmp").write_text("half")
    write_json(tmp_path / "m.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_work_in_progress_of_a_running_process_is_left_alone(tmp_path):
    import os
    import subprocess

    finished = subprocess.Popen(["true"])
    finished.wait()  # a PID no running process has (for the moment)
    (tmp_path / f".m.json.{finished.pid}.abc123.tmp").write_text("killed")
    (tmp_path / f".m.json.{os.getpid()}.def456.tmp").write_text("in progress")  # a running writer's
    (tmp_path / ".m.jsonl.ghi789.tmp").write_text("another output's")
    write_json(tmp_path / "m.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f".m.json.{os.getpid()}.def456.tmp", ".m.jsonl.ghi789.tmp", "m.json"]
