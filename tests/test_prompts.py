from ift.prompts import PROMPT_NO_INPUT, PROMPT_WITH_INPUT, format_prompt, hydrate

GOLDEN_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n"
    "\n"
    "### Instruction:\n"
    "Sort the words.\n"
    "\n"
    "### Input:\n"
    "pear apple\n"
    "\n"
    "### Response:"
)
GOLDEN_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n"
    "\n"
    "### Instruction:\n"
    "What is 2 plus 2?\n"
    "\n"
    "### Response:"
)


def test_template_with_input_is_exact():
    assert format_prompt("Sort the words.", "pear apple") == GOLDEN_WITH_INPUT


def test_template_without_input_is_exact():
    assert format_prompt("What is 2 plus 2?") == GOLDEN_NO_INPUT
    assert format_prompt("What is 2 plus 2?", "") == GOLDEN_NO_INPUT
    assert format_prompt("What is 2 plus 2?", "  \n ") == GOLDEN_NO_INPUT


def test_prompt_ends_right_after_response_marker():
    for template in (PROMPT_WITH_INPUT, PROMPT_NO_INPUT):
        assert template.endswith("### Response:")


def test_braces_and_template_text_in_data_are_kept():
    instruction = "Fill {instruction} and {input} and {0} and {} and {{x}}"
    data = "### Response: {output}"
    prompt = format_prompt(instruction, data)
    assert f"### Instruction:\n{instruction}\n\n### Input:\n{data}\n\n### Response:" in prompt


def test_hydrate_maps_record_to_input_output():
    row = hydrate({"instruction": "Sort the words.", "input": "pear apple", "output": "apple pear"})
    assert row == {"input": GOLDEN_WITH_INPUT, "output": "apple pear"}


def test_hydrate_without_input_key():
    row = hydrate({"instruction": "What is 2 plus 2?", "output": "4"})
    assert row == {"input": GOLDEN_NO_INPUT, "output": "4"}
