import pytest

from ift.errors import UserError
from ift.hub import hub_errors, resolve_revision, set_offline


def test_set_offline_applies_even_after_huggingface_hub_was_imported(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    set_offline()
    assert constants.HF_HUB_OFFLINE is True


def test_offline_and_not_cached_is_one_line_naming_the_repo():
    set_offline()
    with pytest.raises(UserError) as info:
        resolve_revision("EleutherAI/pythia-70m", "model", "main")
    message = str(info.value)
    assert "\n" not in message and "EleutherAI/pythia-70m" in message and "HF_HUB_OFFLINE" in message


def test_other_failures_are_wrapped_with_the_hint():
    with pytest.raises(UserError, match=r"cannot fetch dataset 'x/y'.*model=tiny data=demo"):
        with hub_errors("dataset", "x/y"):
            raise RuntimeError("boom")
