"""dvc.yaml lists, for each stage, the package modules its script imports (so a code change
reruns the stages it affects): checked against the imports themselves."""

import re
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def imported_modules(script: Path) -> set[str]:
    """`src/ift/<module>.py` for every ift module `script` imports at module level, transitively.

    Imports inside functions are left out: they run only on some code paths (fetch's
    pretraining, for one), which a stage lists by hand.
    """
    seen: set[str] = set()
    todo = [script]
    while todo:
        for module in re.findall(r"^(?:from ift\.(\w+) import|import ift\.(\w+))", todo.pop().read_text(), re.M):
            name = f"src/ift/{''.join(module)}.py"
            if name not in seen:
                seen.add(name)
                todo.append(ROOT / name)
    return seen


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_depends_on_the_code_it_imports(stage):
    script = ROOT / STAGES[stage]["cmd"].split()[1]
    assert imported_modules(script) <= set(STAGES[stage]["deps"])
    assert str(script.relative_to(ROOT)) in STAGES[stage]["deps"]


@pytest.mark.parametrize("module", ["src/ift/trainer.py", "src/ift/training.py", "src/ift/packing.py",
                                    "src/ift/attention.py"])
def test_the_finetuning_code_is_a_dependency_of_train_alone(module):
    """Editing the loss, the trainer or packing reruns train (and tuned_eval, through the model) only."""
    assert [name for name, stage in STAGES.items() if module in stage["deps"]] == ["train"]


def test_train_params_are_read_by_train_alone():
    readers = [name for name, stage in STAGES.items()
               if any(p == "train" or str(p).startswith("train.") for p in stage.get("params", []))]
    assert readers == ["train"]
