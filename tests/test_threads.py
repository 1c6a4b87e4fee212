"""ift.threads: how many jobs share the machine, from the process table."""

import pytest

from ift.threads import concurrent_jobs, share_cores

PY = "/venv/bin/python"
WORKER = ["/venv/bin/python", "/venv/bin/dvc", "exp", "queue-worker", "dvc-exp-ab12cd-1@localhost"]
DVC = ["/venv/bin/python", "/venv/bin/dvc", "exp", "exec-run"]


def stage(name):
    return [PY, f"stages/{name}.py", "models/base"]


def test_a_lone_stage_is_one_job():
    assert concurrent_jobs([(1, 0, ["bash"]), (10, 1, ["dvc", "repro"]), (11, 10, stage("train"))], me=11) == 1


def test_queue_workers_each_count_once_with_their_stages():
    rows = [(1, 0, ["init"]),
            (20, 1, WORKER), (21, 20, DVC), (22, 21, stage("train")),
            (30, 1, [*WORKER[:4], "dvc-exp-ab12cd-2@localhost"]), (31, 30, DVC), (32, 31, stage("evaluate"))]
    assert concurrent_jobs(rows, me=22) == 2
    # a worker between two stages still holds its share
    assert concurrent_jobs([row for row in rows if row[0] != 32], me=22) == 2


def test_a_stage_beside_a_queue_and_torchrun_workers_inside_a_stage():
    rows = [(1, 0, ["init"]), (20, 1, WORKER), (22, 20, stage("train")),
            (40, 1, stage("train")), (41, 40, [PY, "-u", "stages/train.py"]), (42, 40, stage("train"))]
    assert concurrent_jobs(rows, me=40) == 2  # the queue's worker, and the stage with its two processes
    assert concurrent_jobs([(1, 0, ["init"]), (50, 1, stage("fetch"))], me=99) == 2  # me not yet listed


def test_share_cores_splits_torchs_threads_unless_omp_num_threads_is_set(monkeypatch):
    import torch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("ift.threads._processes", lambda: [(1, 0, WORKER), (2, 0, WORKER), (3, 0, WORKER)])
    monkeypatch.setattr(torch, "get_num_threads", lambda: 6)
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    share_cores()
    assert calls == [1]  # 6 threads / (3 workers + this stage)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    calls.clear()
    share_cores()
    assert calls == []


@pytest.mark.parametrize("alone", [[(1, 0, ["init"])], []])
def test_alone_keeps_torchs_default(monkeypatch, alone):
    import torch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("ift.threads._processes", lambda: alone)
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    share_cores()
    assert calls == []
