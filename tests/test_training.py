import pytest
import torch

from ift.config import TrainConfig
from ift.training import run_key


def test_run_key_changes_with_params_inputs_and_code_only(tmp_path):
    code, data = tmp_path / "training.py", tmp_path / "train.jsonl"
    code.write_text("loss = 1\n")
    data.write_text("{}\n")

    def key(**train):
        return run_key(0, TrainConfig(**train), [data], code=[code])

    first = key()
    assert key() == first
    assert key(learning_rate=0.5) != first
    data.write_text('{"a": 1}\n')
    second = key()
    assert second != first
    code.write_text("loss = 2\n")
    assert key() != second


def test_the_code_in_the_key_is_what_the_process_imported():
    import subprocess
    import sys

    listed = subprocess.run([sys.executable, "-c", "import ift.training as t; print(*t.imported_code(), sep='\\n')"],
                            capture_output=True, text=True, check=True).stdout.split()
    names = {line.rsplit("/", 1)[-1] for line in listed}
    assert {"training.py", "trainer.py", "config.py"} <= names
    assert "verify.py" not in names  # a module the train stage never runs


def test_training_progress_is_one_labelled_line_per_log():
    from types import SimpleNamespace

    from ift.progress import ReadableProgressCallback

    callback, lines = ReadableProgressCallback("finetuning"), []
    callback.training_bar = SimpleNamespace(write=lines.append)
    state = SimpleNamespace(is_world_process_zero=True, global_step=10, max_steps=339)
    callback.on_log(None, state, None, logs={"loss": 3.94561, "learning_rate": 0.00052941, "epoch": 0.0885,
                                             "total_flos": 5.0})
    assert lines == ["finetuning step 10/339: loss 3.946  learning_rate 0.0005294"]


@pytest.mark.slow
@pytest.mark.parametrize("lora", [False, True])
def test_gradient_checkpointing_trains_to_the_same_weights(tiny_tokenizer, tmp_path, lora):
    from ift.config import LoraConfig, TinyModelConfig, TrainConfig
    from ift.tiny import build_tiny_model
    from ift.tokenization import build_dataset
    from ift.trainer import run_sft
    from tests.helpers import TRAIN_ROWS

    arch = TinyModelConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=256)
    dataset, _ = build_dataset(TRAIN_ROWS * 4, tiny_tokenizer, max_length=256, source="rows")
    weights = []
    for checkpointing in (False, True):
        cfg = TrainConfig(per_device_train_batch_size=4, bf16=False, max_steps=3, save_steps=0, learning_rate=1e-2,
                          gradient_checkpointing=checkpointing, lora=LoraConfig(enabled=lora, r=4, alpha=8))
        model, _ = run_sft(build_tiny_model(arch, tiny_tokenizer, 0), tiny_tokenizer, dataset, cfg, 0,
                           tmp_path / str(checkpointing))
        assert model.is_gradient_checkpointing == checkpointing
        weights.append({name: p.detach().clone() for name, p in model.named_parameters()})
    for name in weights[0]:  # recomputing activations changes memory, not results
        assert torch.equal(weights[0][name], weights[1][name]), name


@pytest.mark.slow
def test_a_resumed_full_run_ends_with_the_same_weights_and_no_skipped_keys(tiny_tokenizer, tmp_path, caplog):
    """Resumed from its first checkpoint (as after a kill): every weight as in the whole run, the
    output layer too (saved as embed_out.weight, which the Trainer's own load skips)."""
    import shutil

    from ift.config import TinyModelConfig
    from ift.tiny import build_tiny_model
    from ift.tokenization import build_dataset
    from ift.trainer import run_sft
    from tests.helpers import TRAIN_ROWS

    arch = TinyModelConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=256)
    dataset, _ = build_dataset(TRAIN_ROWS * 4, tiny_tokenizer, max_length=256, source="rows")
    cfg = TrainConfig(per_device_train_batch_size=4, bf16=False, max_steps=6, save_steps=3, learning_rate=1e-2)
    whole, _ = run_sft(build_tiny_model(arch, tiny_tokenizer, 0), tiny_tokenizer, dataset, cfg, 0, tmp_path)
    shutil.rmtree(tmp_path / "checkpoint-6")  # killed after its first checkpoint
    caplog.clear()
    resumed, result = run_sft(build_tiny_model(arch, tiny_tokenizer, 0), tiny_tokenizer, dataset, cfg, 0,
                              tmp_path, resume_from=tmp_path / "checkpoint-3")
    assert result["global_step"] == 6
    assert "missing keys" not in caplog.text and "unexpected keys" not in caplog.text
    expected = dict(whole.named_parameters())
    for name, weight in resumed.named_parameters():
        assert torch.equal(weight, expected[name]), name
