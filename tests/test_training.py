from ift.config import TrainConfig
from ift.training import run_key


def test_run_key_changes_with_params_inputs_and_code_only(tmp_path):
    code, data = tmp_path / "ift", tmp_path / "train.jsonl"
    code.mkdir()
    (code / "training.py").write_text("loss = 1\n")
    data.write_text("{}\n")

    def key(**train):
        return run_key(0, TrainConfig(**train), [data], code_dir=code)

    first = key()
    (code / "training.cpython-311.pyc").write_bytes(b"\0")  # compiled files come and go
    assert key() == first
    assert key(learning_rate=0.5) != first
    data.write_text('{"a": 1}\n')
    second = key()
    assert second != first
    (code / "training.py").write_text("loss = 2\n")
    assert key() != second


def test_training_progress_is_one_labelled_line_per_log():
    from types import SimpleNamespace

    from ift.progress import ReadableProgressCallback

    callback, lines = ReadableProgressCallback("finetuning"), []
    callback.training_bar = SimpleNamespace(write=lines.append)
    state = SimpleNamespace(is_world_process_zero=True, global_step=10, max_steps=339)
    callback.on_log(None, state, None, logs={"loss": 3.94561, "learning_rate": 0.00052941, "epoch": 0.0885,
                                             "total_flos": 5.0})
    assert lines == ["finetuning step 10/339: loss 3.946  learning_rate 0.0005294"]
