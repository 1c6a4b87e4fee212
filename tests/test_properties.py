"""Property tests: prompt formatting never raises; masking never labels a prompt token."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ift.prompts import PROMPT_NO_INPUT, PROMPT_WITH_INPUT, format_prompt, hydrate
from ift.tokenization import IGNORE_INDEX, encode_example

texts = st.text(max_size=2000)  # any unicode, braces, template text, empty


@given(instruction=texts, input=st.one_of(st.none(), texts), output=texts)
def test_hydrate_never_raises_and_keeps_the_text(instruction, input, output):
    row = hydrate({"instruction": instruction, "input": input, "output": output})
    assert row["output"] == output
    assert row["input"].endswith("### Response:")
    assert f"### Instruction:\n{instruction}\n\n" in row["input"]
    if input is not None and input.strip():
        assert f"### Input:\n{input}\n\n### Response:" in row["input"]
        assert row["input"].startswith(PROMPT_WITH_INPUT.split("{instruction}")[0])
    else:  # the template without an input section, word for word
        assert row["input"] == PROMPT_NO_INPUT.format(instruction=instruction)


@given(instruction=st.text(alphabet="{}#:\n abc", max_size=50))
def test_template_like_text_is_not_substituted(instruction):
    assert instruction in format_prompt(instruction, "{input}")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60, deadline=None)
@given(prompt=texts, answer=texts)
def test_masking_never_labels_a_prompt_token(tiny_tokenizer, prompt, answer):
    example = encode_example(prompt, answer, tiny_tokenizer)
    prompt_len = len(tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"])
    labels = [t if m else IGNORE_INDEX for t, m in zip(example["input_ids"], example["completion_mask"])]
    assert labels[:prompt_len] == [IGNORE_INDEX] * prompt_len  # no prompt token is labelled
    assert labels[prompt_len:] == example["input_ids"][prompt_len:]  # every answer token is
    assert labels[-1] == tiny_tokenizer.eos_token_id  # and the answer ends with EOS
    assert example["input_ids"][:prompt_len] == tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"]
