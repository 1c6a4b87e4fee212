"""The classic tutorial's evaluation, faithfully: the loop our eval stages replace."""

from __future__ import annotations


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
