"""ift.processes and the error hand-off from training processes to their launcher (fast parts;
the real two-process runs are in tests/test_e2e.py)."""

import json
import os

import pytest

from ift.errors import LAUNCHER_ENV, UserError, run_main
from ift.processes import is_main_process, launched_by_torchrun, threads_per_process, world_size


def test_threads_are_shared_between_processes(monkeypatch):
    monkeypatch.setattr("torch.get_num_threads", lambda: 8)
    assert [threads_per_process(n) for n in (1, 2, 3, 16)] == [8, 4, 2, 1]


def test_rank_and_world_come_from_torchrun(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert (launched_by_torchrun(), is_main_process(), world_size()) == (False, True, 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert (launched_by_torchrun(), is_main_process(), world_size()) == (True, False, 4)


@run_main
def _fails():
    raise UserError("data/x.csv: line 3: empty answer")


def test_a_training_process_hands_its_error_line_to_the_launcher(tmp_path, monkeypatch, capsys):
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    error_file = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(error_file))
    monkeypatch.setenv(LAUNCHER_ENV, str(os.getppid()))  # this process's parent launched it
    with pytest.raises(SystemExit) as exit_:
        _fails()
    assert exit_.value.code == 2 and capsys.readouterr().err == ""  # the launcher prints it, once
    failure = ProcessFailure(local_rank=1, pid=1, exitcode=2, error_file=str(error_file))
    assert failure.message == "data/x.csv: line 3: empty answer"  # as torchrun reads it back
    assert json.loads(error_file.read_text())["message"] == failure.message

    for launcher in (str(os.getpid()), None):  # the launcher itself, and no launcher: the line is printed
        if launcher is None:
            monkeypatch.delenv(LAUNCHER_ENV)
        else:
            monkeypatch.setenv(LAUNCHER_ENV, launcher)
        with pytest.raises(SystemExit):
            _fails()
        assert capsys.readouterr().err == "error: data/x.csv: line 3: empty answer\n"


def test_a_checkpoint_of_several_processes_needs_every_rng_state(tmp_path, monkeypatch):
    from ift.training import last_complete_checkpoint

    for step, ranks in ((100, (0, 1)), (200, (0,))):  # the kill came before rank 1 wrote step 200's
        checkpoint = tmp_path / f"checkpoint-{step}"
        checkpoint.mkdir()
        (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        for rank in ranks:
            (checkpoint / f"rng_state_{rank}.pth").write_bytes(b"")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-100"
    monkeypatch.delenv("WORLD_SIZE")
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-200"


def test_a_worker_leaves_its_process_group_at_its_end(tmp_path):
    """Left open, gloo can abort the worker as Python exits, failing a finished run."""
    import torch.distributed as dist

    from ift.processes import leave_process_group

    leave_process_group()  # one process, no group: nothing to do
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    leave_process_group()
    assert not dist.is_initialized()
