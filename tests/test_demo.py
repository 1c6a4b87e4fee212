import pytest

from ift import demo
from ift.errors import UserError


def test_generate_is_deterministic():
    assert demo.generate(300, seed=7) == demo.generate(300, seed=7)
    assert demo.generate(300, seed=7) != demo.generate(300, seed=8)


def test_records_are_unique_alpaca_records():
    records = demo.generate(1000, seed=1)
    assert len(records) == 1000
    assert all(set(r) == {"instruction", "input", "output"} for r in records)
    assert len({(r["instruction"], r["input"]) for r in records}) == 1000
    assert any(r["input"] for r in records) and any(not r["input"] for r in records)
    assert all(r["output"].strip() for r in records)


def test_answers_follow_from_instruction_and_input():
    for r in demo.generate(400, seed=3):
        words = r["input"].split()
        if r["instruction"] == "Reverse the order of the words.":
            assert r["output"].split() == words[::-1]
        elif r["instruction"] == "Sort the words in alphabetical order.":
            assert r["output"].split() == sorted(words)
        elif r["instruction"] == "How many words are in the list?":
            assert r["output"] == str(len(words))
        elif r["instruction"].startswith("What is the first word"):
            assert r["output"] == words[0]
        elif r["instruction"].startswith("What is the second word"):
            assert r["output"] == words[1]
        elif r["instruction"].startswith("What is the last word"):
            assert r["output"] == words[-1]
        elif r["instruction"].endswith(" plus one?"):
            number = r["instruction"][len("What is "):-len(" plus one?")]
            assert r["output"] == str(int(number) + 1)
        elif r["instruction"].startswith("Repeat the word "):
            _, _, _, word, times, _ = r["instruction"].split()
            assert r["output"].split() == [word] * demo.NUMBER_WORDS.index(times)
        elif r["instruction"].startswith("Which word in the list is "):
            category = r["instruction"][len("Which word in the list is "):-1]
            members = [w for w in r["input"].split(", ") if w in demo.CATEGORIES[category]]
            assert members == [r["output"]]
        elif r["instruction"].startswith("Write the words ") and r["instruction"].endswith(" in reverse order."):
            _, _, _, first, _, second, *_ = r["instruction"].split()
            assert r["output"] == f"{second} {first}"
        else:
            pytest.fail(f"no check for the task of {r['instruction']!r}")


def test_too_many_examples_fail_clearly(monkeypatch):
    monkeypatch.setattr(demo, "TASKS", (demo.repeat_word,))  # 48 words x 3 counts = 144 pairs
    assert len(demo.generate(144, seed=0)) == 144
    with pytest.raises(UserError, match=r"data.demo.num_examples=145: .* only 144 .*num_examples=144"):
        demo.generate(145, seed=0)


def test_pretraining_corpus_is_deterministic_and_has_no_tasks():
    corpus = demo.pretraining_corpus(200, seed=1)
    assert corpus == demo.pretraining_corpus(200, seed=1)
    assert not any("###" in doc or "?" in doc or "Instruction" in doc for doc in corpus)
