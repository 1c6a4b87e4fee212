"""dvc.yaml lists, for each stage, the package modules its script imports (so a code change
reruns the stages it affects): checked against the imports themselves."""

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

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
