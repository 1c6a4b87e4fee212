"""The Alpaca prompt templates and `hydrate(record) -> {"input": prompt, "output": answer}`.

The template text is a format fact (models finetuned elsewhere expect it): keep it exact.
The prompt ends right after "### Response:"; the answer follows it.
"""

from __future__ import annotations

from collections.abc import Mapping

PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)


def format_prompt(instruction: str, input: str | None = None) -> str:
    """Fill the template; an empty or missing input selects the template without input.

    A single `str.format` call substitutes the values without parsing them again, so
    braces or template-like text inside the data (`{instruction}`, `### Response:`) stay
    as they are.
    """
    if input is not None and input.strip():
        return PROMPT_WITH_INPUT.format(instruction=instruction, input=input)
    return PROMPT_NO_INPUT.format(instruction=instruction)


def hydrate(record: Mapping[str, str | None]) -> dict[str, str]:
    """Turn an {instruction, input, output} record into {"input": prompt, "output": answer}."""
    return {
        "input": format_prompt(record["instruction"], record.get("input")),
        "output": record["output"],
    }
