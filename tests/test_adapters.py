"""LoRA through peft (ift.adapters, and the trainer with train.lora.enabled): what trains, the
merged model, resume, and the 4-bit refusal on a machine without a CUDA GPU."""

import pytest
import torch

from ift.config import LoraConfig, TrainConfig, validate
from ift.errors import UserError
from tests.helpers import TRAIN_ROWS, sharpen

LORA = LoraConfig(enabled=True, r=4, alpha=8)


def _lora_trainer(model, tokenizer, work_dir, **overrides):
    from ift.tokenization import build_dataset
    from ift.trainer import make_trainer

    dataset, _ = build_dataset(TRAIN_ROWS * 4, tokenizer, max_length=256, source="rows")
    cfg = TrainConfig(per_device_train_batch_size=4, bf16=False, lora=LORA, **overrides)
    return make_trainer(model, tokenizer, dataset, cfg, 0, work_dir)


def test_only_the_adapter_weights_train(tiny_model, tiny_tokenizer, tmp_path, caplog):
    linears = {name: module for name, module in tiny_model.named_modules()
               if isinstance(module, torch.nn.Linear) and name != "lm_head"}
    assert {name.split(".")[-1] for name in linears} == {"query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"}
    total = sum(p.numel() for p in tiny_model.parameters())
    with caplog.at_level("INFO", logger="ift.trainer"):
        trainer = _lora_trainer(tiny_model, tiny_tokenizer, tmp_path, max_steps=1)
    trainable = {name: p.numel() for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)
    # r x (in + out) per adapted Linear: every Linear but the LM head ("all-linear")
    expected = sum(LORA.r * (m.in_features + m.out_features) for m in linears.values())
    assert sum(trainable.values()) == expected
    assert f"training {expected:,} of {total + expected:,} parameters" in caplog.text


def test_merged_model_gives_the_adapter_models_logits(tiny_model, tiny_tokenizer, tmp_path):
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from ift.adapters import ADAPTER_DIR, peft_config, save_merged
    from ift.modeling import save_model

    sharpen(tiny_model)
    save_model(tiny_model, tiny_tokenizer, tmp_path / "base")
    adapted = get_peft_model(tiny_model, peft_config(LORA))
    with torch.no_grad():  # a trained adapter: B is no longer zero
        for name, weight in adapted.named_parameters():
            if ".lora_B." in name:
                weight.normal_(0, 0.5)
    save_merged(adapted, tmp_path / "base", tiny_tokenizer, tmp_path / "tuned")

    assert (tmp_path / "tuned" / ADAPTER_DIR / "adapter_config.json").exists()
    assert (tmp_path / "tuned" / ADAPTER_DIR / "adapter_model.safetensors").exists()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "tuned")  # a plain model: no peft involved
    assert not any("lora" in name for name, _ in merged.named_parameters())
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    shipped = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tmp_path / "base"),
                                        tmp_path / "tuned" / ADAPTER_DIR)
    ids = tiny_tokenizer(["Reverse the order of the words. cat dog red"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        merged_logits, adapter_logits = merged(ids).logits, shipped(ids).logits
        base_logits = base(ids).logits
    torch.testing.assert_close(merged_logits, adapter_logits, rtol=1e-4, atol=1e-4)
    assert (merged_logits - base_logits).abs().max() > 0.1  # the adapter changed the model


@pytest.mark.slow
def test_a_resumed_lora_run_ends_with_the_same_adapter(tiny_tokenizer, tmp_path):
    """A run resumed from its first checkpoint (as after a kill) trains to the same weights."""
    import shutil

    from ift.config import TinyModelConfig
    from ift.tiny import build_tiny_model
    from ift.tokenization import build_dataset
    from ift.trainer import run_sft

    arch = TinyModelConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=256)
    dataset, _ = build_dataset(TRAIN_ROWS * 4, tiny_tokenizer, max_length=256, source="rows")
    cfg = TrainConfig(per_device_train_batch_size=4, bf16=False, lora=LORA, max_steps=6, save_steps=3,
                      learning_rate=1e-2)

    def adapter(model):
        return {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" in name}

    whole, _ = run_sft(build_tiny_model(arch, tiny_tokenizer, 0), tiny_tokenizer, dataset, cfg, 0, tmp_path / "a")
    shutil.rmtree(tmp_path / "a" / "checkpoint-6")  # killed after its first checkpoint
    resumed, result = run_sft(build_tiny_model(arch, tiny_tokenizer, 0), tiny_tokenizer, dataset, cfg, 0,
                              tmp_path / "a", resume_from=tmp_path / "a" / "checkpoint-3")
    assert result["global_step"] == 6
    first, second = adapter(whole), adapter(resumed)
    assert first.keys() == second.keys() and first
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=0, msg=name)
    fresh = adapter(run_sft(build_tiny_model(arch, tiny_tokenizer, 0), tiny_tokenizer, dataset,
                            TrainConfig(**{**vars(cfg), "max_steps": 3, "save_steps": 0}), 0, tmp_path / "b")[0])
    assert any(not torch.equal(fresh[name], first[name]) for name in first)  # steps 4-6 did train


def test_four_bit_weights_without_a_cuda_gpu_are_one_clear_error(monkeypatch):
    from ift.adapters import four_bit_quantization

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match=r"load_in_4bit=true needs a CUDA GPU.*load_in_4bit=false"):
        four_bit_quantization()


@pytest.mark.parametrize(("lora", "message"), [
    ({"load_in_4bit": True}, "needs train.lora.enabled=true"),
    ({"enabled": True, "r": 0}, "train.lora.r=0 must be >= 1"),
    ({"enabled": True, "target_modules": []}, "train.lora.target_modules"),
    ({"enabled": True, "dropout": 1.0}, "train.lora.dropout"),
])
def test_bad_lora_settings_name_the_key(lora, message):
    with pytest.raises(UserError, match=message):
        validate({"train": {"lora": lora}})


def test_fsdp_with_lora_is_refused():
    with pytest.raises(UserError, match="train.fsdp=full_shard cannot be combined with train.lora.enabled"):
        validate({"train": {"fsdp": "full_shard", "lora": {"enabled": True}}})
    assert validate({"train": {"fsdp": "full_shard"}}).train.fsdp == "full_shard"
