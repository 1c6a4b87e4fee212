"""Real-model code paths, offline: a Pythia-like model saved with save_pretrained stands in
for the Hub (EOS `<|endoftext|>` id 0, `<|padding|>` in the vocabulary but no pad token set,
no EOS appended by the tokenizer)."""

import sys

import pytest

from ift.config import ModelConfig, TrainConfig
from ift.errors import UserError
from ift.modeling import fetch_base_model, load_model, load_tokenizer, save_model
from ift.tokenization import ADDED_PAD_TOKEN, PAD_TOKEN, build_dataset
from ift.training import finetune
from tests.helpers import save_pythia_like


def test_pythia_like_tokenizer_appends_no_eos(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(save_pythia_like(tmp_path / "m"))
    ids = tokenizer("Reverse the words")["input_ids"]
    assert tokenizer.eos_token_id not in ids


def test_fetch_local_dir_pads_with_padding_entry(tmp_path):
    model, tokenizer, meta = fetch_base_model(ModelConfig(name_or_path=str(save_pythia_like(tmp_path / "m"))),
                                              [], seed=0, work_dir=tmp_path / "work")
    assert tokenizer.pad_token == PAD_TOKEN and tokenizer.pad_token_id == 1
    assert tokenizer.eos_token_id == 0
    assert model.generation_config.pad_token_id == 1 and model.generation_config.eos_token_id == 0
    assert meta["local"] is True and meta["pad_token"] == PAD_TOKEN


def test_tokenizer_without_padding_entry_gets_a_new_pad_token(tmp_path):
    model, tokenizer, _ = fetch_base_model(
        ModelConfig(name_or_path=str(save_pythia_like(tmp_path / "m", with_padding_entry=False))),
        [], seed=0, work_dir=tmp_path / "work")
    assert tokenizer.pad_token == ADDED_PAD_TOKEN != tokenizer.eos_token
    assert model.get_input_embeddings().num_embeddings >= len(tokenizer)


def test_tuned_pythia_like_model_keeps_pad_and_eos_rules(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer, _ = fetch_base_model(ModelConfig(name_or_path=str(save_pythia_like(tmp_path / "m"))),
                                           [], seed=0, work_dir=tmp_path / "work")
    save_model(model, tokenizer, tmp_path / "base")
    tokenizer, model = load_tokenizer(tmp_path / "base"), load_model(tmp_path / "base")
    rows = [{"input": "### Instruction:\nSay {hi}\n\n### Response:", "output": "{hi}"}] * 8
    dataset, _ = build_dataset(rows, tokenizer, max_length=64, source="rows")
    finetune(model, tokenizer, dataset, TrainConfig(max_steps=2, per_device_train_batch_size=4),
             seed=0, work_dir=tmp_path / "work", reports_dir=tmp_path / "reports")
    save_model(model, tokenizer, tmp_path / "tuned")

    tuned_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tuned")
    tuned = AutoModelForCausalLM.from_pretrained(tmp_path / "tuned")
    assert tuned_tokenizer.pad_token == PAD_TOKEN != tuned_tokenizer.eos_token
    assert tuned.generation_config.pad_token_id == tuned_tokenizer.pad_token_id
    assert tuned.generation_config.eos_token_id == tuned_tokenizer.eos_token_id == 0
    assert (tmp_path / "tuned" / "model.safetensors").exists()
    assert not list((tmp_path / "tuned").glob("*.bin"))


def test_pickle_only_checkpoint_is_refused(tmp_path):
    """Weights load from safetensors only: a directory with just pytorch_model.bin fails."""
    import torch
    from safetensors.torch import load_file

    directory = save_pythia_like(tmp_path / "m")
    torch.save(load_file(directory / "model.safetensors"), directory / "pytorch_model.bin")
    (directory / "model.safetensors").unlink()
    with pytest.raises(UserError):
        fetch_base_model(ModelConfig(name_or_path=str(directory)), [], seed=0, work_dir=tmp_path / "w")


@pytest.mark.parametrize("name", ["./no-such-dir", "../elsewhere/model", "/no/such/dir", "a-file", "~nosuchuser/m"])
def test_a_missing_local_model_is_named_as_a_path_not_a_hub_id(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("not a model")
    with pytest.raises(UserError, match=rf"model.name_or_path={name}: .* (does not exist|is a file, not a model "
                                        r"directory); give the directory a model was saved to"):
        fetch_base_model(ModelConfig(name_or_path=name), [], seed=0, work_dir=tmp_path / "w")


def test_unreachable_hub_id_is_one_clear_line(tmp_path):
    with pytest.raises(UserError) as info:
        fetch_base_model(ModelConfig(name_or_path="EleutherAI/pythia-70m", revision="main"),
                         [], seed=0, work_dir=tmp_path / "work")
    message = str(info.value)
    assert "\n" not in message
    assert "EleutherAI/pythia-70m" in message and "model=tiny data=demo" in message


def save_with_own_code(directory):
    """A Pythia-like model whose config points at modeling code shipped in its directory."""
    import json

    save_pythia_like(directory)
    (directory / "custom_neox.py").write_text(
        "from transformers import GPTNeoXConfig, GPTNeoXForCausalLM\n\n\n"
        "class CustomNeoXConfig(GPTNeoXConfig):\n    model_type = 'custom_neox'\n\n\n"
        "class CustomNeoXForCausalLM(GPTNeoXForCausalLM):\n    config_class = CustomNeoXConfig\n")
    config = json.loads((directory / "config.json").read_text())
    config.update(model_type="custom_neox", auto_map={"AutoConfig": "custom_neox.CustomNeoXConfig",
                                                      "AutoModelForCausalLM": "custom_neox.CustomNeoXForCausalLM"})
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_a_model_with_its_own_code_loads_only_with_trust_remote_code(tmp_path):
    directory = save_with_own_code(tmp_path / "m")
    with pytest.raises(UserError, match=r"/m: the model runs code of its own.*model.trust_remote_code=true"):
        load_model(directory)
    model = load_model(directory, trust_remote_code=True)
    assert type(model).__name__ == "CustomNeoXForCausalLM"
    assert load_tokenizer(directory, trust_remote_code=True).eos_token_id == 0


def test_a_leftover_auto_map_for_a_built_in_model_type_needs_no_trust(tmp_path):
    import json

    directory = save_pythia_like(tmp_path / "m")
    config = json.loads((directory / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "gone.GoneForCausalLM"}  # gpt_neox is built in
    (directory / "config.json").write_text(json.dumps(config))
    assert type(load_model(directory)).__name__ == "GPTNeoXForCausalLM"


@pytest.mark.slow
def test_the_stages_and_ift_ask_pass_on_the_consent_in_params_yaml(tmp_path, monkeypatch):
    import json
    import subprocess

    from ift.cli import Assistant
    from ift.config import write_params
    from tests.helpers import ROOT, user_env

    model_dir = save_with_own_code(tmp_path / "m")
    (tmp_path / "test.jsonl").write_text(json.dumps({"input": "Reverse the words", "output": "words the"}) + "\n")
    (tmp_path / "stats.json").write_text(json.dumps({"train": {"tokens": {"answer": {"max": 4}}}}))
    monkeypatch.chdir(tmp_path)
    evaluate = [sys.executable, str(ROOT / "stages/evaluate.py"), "m", "test.jsonl", "out", "--stats", "stats.json",
                "--environment", "env.json"]
    for trust in (False, True):
        write_params([f"model.trust_remote_code={str(trust).lower()}"], tmp_path / "params.yaml", ROOT / "conf")
        result = subprocess.run(evaluate, cwd=tmp_path, env=user_env(), capture_output=True, text=True)
        assert (result.returncode == 0) == trust, result.stderr[-1000:]
        assert (tmp_path / "out/metrics.json").exists() == trust
        if trust:
            assert type(Assistant(model_dir, max_new_tokens=2).model).__name__ == "CustomNeoXForCausalLM"
        else:
            assert "model.trust_remote_code=true" in result.stderr
            with pytest.raises(UserError, match="runs code of its own"):
                Assistant(model_dir, max_new_tokens=2)
