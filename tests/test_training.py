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
