from ift.evaluation import example_scores
from ift.generation import stopped_at_limit
from ift.prompts import PROMPT_NO_INPUT, PROMPT_WITH_INPUT, format_prompt
from ift.report import RUN_FILE, comparison_markdown, generation_warnings, model_card


def predictions(answers, references, **extra):
    """Prediction records as the eval stages write them."""
    return [{"input": f"### Instruction:\nq{i}\n\n### Response:", "reference": r, "prediction": a,
             "scores": {**s, "answer_loss_sum": 1.0, "answer_tokens": 1}, "reference_tokens": len(r.split()),
             "generated_tokens": len(a.split()), "stopped_at_limit": False, **extra}
            for i, (a, r, s) in enumerate(zip(answers, references, example_scores(answers, references)))]


def test_stopped_at_limit_means_cut_before_eos():
    assert stopped_at_limit([5, 6, 7], 3, eos_token_id=0)
    assert not stopped_at_limit([5, 6, 0], 3, eos_token_id=0)  # EOS as the last allowed token
    assert not stopped_at_limit([5, 0], 3, eos_token_id=0)


def test_warnings_name_cut_answers_long_references_and_collapse():
    refs = [f"w{i} x" for i in range(40)]
    assert generation_warnings(predictions(refs, refs), max_new_tokens=32, model="tuned") == []
    cut = predictions(refs, refs, stopped_at_limit=True)
    assert "40 of 40 answers (100.0%) stopped at eval.max_new_tokens=32" in generation_warnings(cut, 32, "tuned")[0]
    long = generation_warnings(predictions(refs, refs), max_new_tokens=1, model="tuned")
    assert long == ["tuned: 40 of 40 reference answers are longer than eval.max_new_tokens=1 tokens (longest 2): "
                    "no answer can match them"]
    same = generation_warnings(predictions(["I am a model"] * 40, refs), 32, "base model")
    assert same and "40 of 40 answers (100.0%) are the same text (I am a model)" in same[0]


def test_the_report_marks_only_significant_improvements():
    refs = [f"w{i}" for i in range(400)]
    base = predictions(["x"] * 200 + refs[200:], refs)
    slightly_better = predictions(["x"] * 195 + refs[195:], refs)  # 5 more right: not significant
    report = comparison_markdown(base, slightly_better, 2, "base", "tuned", seed=0, max_new_tokens=32)
    row = next(line for line in report.splitlines() if line.startswith("| exact_match |"))
    assert "0.5000 [" in row and "+0.0125 [" in row and "✓" not in row and "McNemar exact" in row
    much_better = predictions(refs, refs)
    row = next(line for line in comparison_markdown(base, much_better, 0, "base", "tuned", 0, 32).splitlines()
               if line.startswith("| exact_match |"))
    assert "✓" in row and "< 0.001" in row


def test_a_repeated_label_is_not_collapse():
    refs = ["positive"] * 30 + ["negative"] * 10
    assert generation_warnings(predictions(["positive"] * 28 + ["negative"] * 12, refs), 32, "tuned") == []
    assert generation_warnings(predictions(["positive"] * 40, refs), 32, "tuned") == []  # 75% vs 100%: a bias


def a_model_card() -> str:
    return model_card({"name_or_path": "EleutherAI/pythia-70m", "resolved_revision": "abc"},
                      {"source": "hub", "name": "tatsu-lab/alpaca", "counts": {"train": 9, "test": 1}},
                      {"learning_rate": 1e-4}, seed=0, training={"global_step": 3, "final_loss": 1.5},
                      run="0123456789abcdef")


def test_the_model_card_names_its_run_and_how_to_find_the_commit():
    card = a_model_card()
    assert "Run `0123456789abcdef`" in card
    assert f"`git log --all --oneline -S 0123456789abcdef -- {RUN_FILE}`" in card
    assert "base_model: EleutherAI/pythia-70m" in card and "learning_rate: 0.0001" in card


def test_the_model_card_carries_the_prompt_templates_its_model_was_trained_on():
    """A model shipped without this repo still says how to prompt it, and its example is right."""
    card = a_model_card()
    assert f"```text\n{PROMPT_WITH_INPUT}\n```" in card and f"```text\n{PROMPT_NO_INPUT}\n```" in card
    example = next(line for line in card.splitlines() if line.startswith("prompt = "))
    namespace: dict = {}
    exec(example, namespace)  # the card's own line, as a user would paste it
    assert namespace["prompt"] == format_prompt("Name a fruit.")
