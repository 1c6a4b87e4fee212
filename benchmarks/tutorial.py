"""The classic tutorial's evaluation, faithfully; as a script, its whole process on the tuned model.

python -m benchmarks.tutorial  (in a built pipeline: loads models/tuned, answers the test set)
"""

from __future__ import annotations

import json


def tutorial_inference(text: str, model, tokenizer, max_input_tokens: int = 1000, max_output_tokens: int = 100,
                       return_token_ids: bool = False):
    """The classic tutorial's `inference`, faithfully: one example, no attention mask,
    `max_length` (which counts the prompt), and the prompt cut off by characters.

    With `return_token_ids`, also the generated token ids (what the answers are compared by).
    """
    input_ids = tokenizer.encode(text, return_tensors="pt", truncation=True, max_length=max_input_tokens)
    device = model.device
    generated_tokens_with_prompt = model.generate(input_ids=input_ids.to(device), max_length=max_output_tokens)
    generated_text_with_prompt = tokenizer.batch_decode(generated_tokens_with_prompt, skip_special_tokens=True)
    generated_text_answer = generated_text_with_prompt[0][len(text):]
    if return_token_ids:
        return generated_text_answer, generated_tokens_with_prompt[0, input_ids.shape[1]:].tolist()
    return generated_text_answer


def main() -> None:
    """The tutorial's loop as a process of its own: load the tuned model, answer the test set."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained("models/tuned")
    model = AutoModelForCausalLM.from_pretrained("models/tuned")
    with open("data/hydrated/test.jsonl") as lines:
        prompts = [json.loads(line)["input"] for line in lines]
    for prompt in prompts:
        tutorial_inference(prompt, model, tokenizer)


if __name__ == "__main__":
    main()
