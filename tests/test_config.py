from pathlib import Path

import pytest
import yaml

from ift.config import (
    NO_LOCAL_INPUT,
    Params,
    check_trainer_choices,
    compose,
    load_params,
    to_yaml,
    validate,
    write_params,
)
from ift.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def presets(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_contract_presets_exist():
    assert {"tiny", "pythia-70m", "pythia-160m", "pythia-410m"} <= set(presets("model"))
    assert {"demo", "alpaca", "lamini_docs", "local"} <= set(presets("data"))


# What a preset needs from the user (its ??? keys).
REQUIRED = {("data", "local"): ["data.path=some.csv"], ("model", "local"): ["model.name_or_path=./some-model"]}


@pytest.mark.parametrize("group", ["model", "data", "train", "eval", "experiment"])
def test_every_preset_composes_and_validates(group):
    for name in presets(group):
        overrides = [f"+experiment={name}" if group == "experiment" else f"{group}={name}",
                     *REQUIRED.get((group, name), [])]
        cfg = compose(overrides, CONF)
        params = validate(cfg)
        assert isinstance(params, Params)
        check_trainer_choices(params.train, name)  # the names transformers must know


@pytest.mark.parametrize("group", ["model", "data", "train", "eval", "experiment"])
def test_every_preset_starts_with_the_command_that_selects_it(group):
    for path in (CONF / group).glob("*.yaml"):
        lines = path.read_text().splitlines()
        first = lines[1] if lines[0].startswith("# @package") else lines[0]  # Hydra wants the header first
        assert first.startswith("# Select with:") and f"{group}={path.stem}" in first, path


def test_an_experiment_preset_and_further_overrides_both_hold():
    params = validate(compose(["+experiment=tutorial", "train.learning_rate=3e-4", "eval.max_new_tokens=64"], CONF))
    assert params.model.name_or_path == "EleutherAI/pythia-70m" and params.data.name == "lamini/lamini_docs"
    assert params.train.per_device_train_batch_size == 8  # the model preset's train preset, through the experiment
    assert params.eval.batch_size == 16  # the experiment's own key
    assert params.train.learning_rate == pytest.approx(3e-4) and params.eval.max_new_tokens == 64


def test_local_presets_make_their_paths_dvc_dependencies():
    params = validate(compose(["data=local", "data.path=qa.csv", "model=local", "model.name_or_path=./m"], CONF))
    assert (params.inputs.data, params.inputs.model) == ("qa.csv", "./m")
    default = validate(compose([], CONF))
    assert default.inputs.data == default.inputs.model == NO_LOCAL_INPUT and (ROOT / NO_LOCAL_INPUT).is_file()


@pytest.mark.parametrize(("overrides", "key"), [
    (["data.source=local", "data.path=qa.csv"], "inputs.data=qa.csv"),
    (["model.name_or_path=./my-model", "model.tiny=null"], "inputs.model=./my-model"),
    (["data=local", "data.path=qa.csv", "inputs.data=other.csv"], "inputs.data=qa.csv"),
])
def test_a_local_input_dvc_would_not_track_fails_and_names_the_fix(overrides, key):
    with pytest.raises(UserError, match="not a DVC dependency") as exc:
        validate(compose(overrides, CONF))
    assert key in str(exc.value)


def test_the_schemas_defaults_are_the_default_presets():
    """One source of defaults: conf/'s default composition and the dataclasses cannot disagree."""
    assert validate(compose([], CONF)) == Params()


@pytest.mark.parametrize("name", [n for n in presets("train") if n != "default"])
def test_size_presets_override_train_default_instead_of_copying_it(name):
    preset = yaml.safe_load((CONF / "train" / f"{name}.yaml").read_text())
    assert preset["defaults"] == ["default", "_self_"]
    default = yaml.safe_load((CONF / "train" / "default.yaml").read_text())
    copied = [key for key, value in preset.items() if key != "defaults" and default.get(key) == value]
    assert not copied, f"only what differs from train/default; copied: {copied}"


def test_committed_params_equal_the_composition_of_conf():
    assert (ROOT / "params.yaml").read_text() == to_yaml(compose([], CONF))


@pytest.mark.parametrize("overrides", [["model=pythia-70m"], ["+experiment=tutorial", "train.learning_rate=3e-4"],
                                       ["data=local", "data.path=qa.csv", "model=local", "model.name_or_path=./m"]])
def test_composition_matches_dvc(tmp_path, overrides):
    from dvc.utils.hydra import compose_and_dump

    out = tmp_path / "params.yaml"
    compose_and_dump(out, str(CONF), None, "config", str(tmp_path), overrides)
    assert out.read_text() == to_yaml(compose(overrides, CONF))


def test_write_params_and_load_roundtrip(tmp_path):
    out = tmp_path / "params.yaml"
    write_params(["train.learning_rate=0.0003", "eval.max_new_tokens=7"], out, CONF)
    params = load_params(out)
    assert params.train.learning_rate == pytest.approx(3e-4)
    assert params.eval.max_new_tokens == 7


def test_typo_key_fails_with_its_name(tmp_path):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["train"]["learnig_rate"] = 0.1
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match="learnig_rate"):
        load_params(path)


def test_wrong_type_fails_with_key_name():
    with pytest.raises(UserError, match="train.learning_rate"):
        compose_and_validate(["train.learning_rate=fast"])


@pytest.mark.parametrize("override, key", [
    ("train.learning_rate=0", "train.learning_rate"),
    ("train.learning_rate=-1e-4", "train.learning_rate"),
    ("data.test_size=1.5", "data.test_size"),
    ("data.test_size=0", "data.test_size"),
    ("train.per_device_train_batch_size=0", "train.per_device_train_batch_size"),
    ("eval.batch_size=0", "eval.batch_size"),
    ("train.attn_implementation=flash", "train.attn_implementation"),
    ("train.pad_to_multiple_of=0", "train.pad_to_multiple_of"),
    ("data.demo.num_examples=1", "data.demo.num_examples"),
])
def test_out_of_range_values_fail_with_key_name(override, key):
    with pytest.raises(UserError, match=key):
        compose_and_validate([override])


@pytest.mark.parametrize("key, typo", [("optim", "adamw_torch_fsued"), ("lr_scheduler_type", "cosin"),
                                       ("train_sampling_strategy", "group_by_lenght")])
def test_trainer_choice_typos_fail_with_key_name_and_choices(key, typo):
    train = compose_and_validate([f"train.{key}={typo}"]).train
    default = getattr(Params().train, key)  # a valid choice, so it is listed
    with pytest.raises(UserError, match=rf"params.yaml: train.{key}={typo} must be one of .*\b{default}\b"):
        check_trainer_choices(train, "params.yaml")


def test_unknown_preset_lists_choices():
    with pytest.raises(UserError, match="pythia-70m"):
        compose(["model=pythia-7b"], CONF)


def test_unknown_key_override_fails():
    with pytest.raises(UserError):
        compose(["train.no_such_key=1"], CONF)


def compose_and_validate(overrides):
    return validate(compose(overrides, CONF))
