import statistics

import pytest

from ift.errors import UserError
from ift.spread import markdown, measure_spread, summarize


def test_summarize_gives_each_metrics_mean_and_sample_std():
    runs = {"seed 1": {"tuned": {"exact_match": 0.70, "exact_match_stderr": 0.01}},
            "seed 2": {"tuned": {"exact_match": 0.80, "exact_match_stderr": 0.01}},
            "seed 3": {"tuned": {"exact_match": 0.90, "exact_match_stderr": 0.01}}}
    result = summarize(runs)
    assert result["mean"]["tuned"]["exact_match"] == pytest.approx(0.8)
    assert result["std"]["tuned"]["exact_match"] == pytest.approx(0.1)  # ddof=1
    table = markdown({"by": "seed", "seeds": [1, 2, 3], "data_seed": 42, **result})
    assert "| tuned | exact_match | 0.8 | 0.1 |" in table and "stderr" not in table


def test_the_rounding_spread_shows_what_ift_verify_allows_in_standard_errors():
    result = {"by": "rounding", "settings": ["one thread"],
              "mean": {"tuned": {"exact_match": 0.8, "exact_match_stderr": 0.01, "n_examples": 2000}},
              "std": {"tuned": {"exact_match": 0.01, "exact_match_stderr": 0.0, "n_examples": 0.0}},
              "runs": {"unperturbed": {"tuned": {"exact_match": 0.8, "exact_match_stderr": 0.01}}}}
    table = markdown(result)
    assert "| tuned | exact_match | 0.8 | 0.01 | 5.2 |" in table  # 3 x sqrt(0.01^2 + 2 x 0.01^2) / 0.01
    assert "| tuned | n_examples | 2000 | 0 | - |" in table
    assert "Over the guarantee" not in table


def test_the_rounding_spread_names_a_metric_it_would_let_move_ten_stderrs_unseen():
    # A spread of 2.5 stderrs: 3 x sqrt(1 + 2 x 2.5^2) = 11.0 stderrs allowed, over the 10 guaranteed.
    result = {"by": "rounding", "settings": ["one thread"],
              "mean": {"baseline": {"token_f1": 0.03, "token_f1_stderr": 0.003},
                       "tuned": {"exact_match": 0.8, "exact_match_stderr": 0.01}},
              "std": {"baseline": {"token_f1": 0.0075, "token_f1_stderr": 0.0},
                      "tuned": {"exact_match": 0.01, "exact_match_stderr": 0.0}},
              "runs": {"unperturbed": {"baseline": {"token_f1": 0.03, "token_f1_stderr": 0.003},
                                       "tuned": {"exact_match": 0.8, "exact_match_stderr": 0.01}}}}
    table = markdown(result)
    assert "| baseline | token_f1 | 0.03 | 0.0075 | 11.0 |" in table
    assert "**Over the guarantee**: baseline token_f1 (11.0) may move more than 10 standard errors" in table
    assert "tuned exact_match" not in table.split("Over the guarantee")[1]


def test_one_seed_is_refused(tmp_path):
    with pytest.raises(UserError, match="at least two seeds"):
        measure_spread(tmp_path, "seed", [1])


def test_each_rounding_setting_is_recorded_as_another_environment():
    from ift.environment import KERNEL_ENV_VARS
    from ift.spread import ROUNDING_SETTINGS

    assert len(ROUNDING_SETTINGS) >= 3
    assert all(name in KERNEL_ENV_VARS for env in ROUNDING_SETTINGS.values() for name in env)


def test_seeds_go_with_the_seed_sweep_only(tmp_path):
    with pytest.raises(UserError, match="--seeds goes with --by seed"):
        measure_spread(tmp_path, "rounding", [1, 2])


def test_a_setting_that_changes_nothing_a_report_depends_on_counts_once():
    # the third run rebuilt the base model's report to the first one's, not the tuned one's
    runs = {"as is": {"baseline": {"token_f1": 0.03}, "tuned": {"exact_match": 0.80}},
            "avx2": {"baseline": {"token_f1": 0.04}, "tuned": {"exact_match": 0.82}},
            "onednn": {"baseline": {"token_f1": 0.03}, "tuned": {"exact_match": 0.81}}}
    result = summarize(runs)
    assert result["std"]["baseline"]["token_f1"] == pytest.approx(statistics.stdev([0.03, 0.04]))
    assert result["std"]["tuned"]["exact_match"] == pytest.approx(0.01)
    assert result["mean"]["baseline"]["token_f1"] == pytest.approx(0.035)
