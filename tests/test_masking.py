"""Label masking: prompt tokens and padding are -100; answer tokens and EOS are kept.

Checked through the real path: our encoding, then TRL's SFTTrainer dataset preparation
and its data collator.
"""

import pytest

from ift.config import TrainConfig
from ift.tokenization import IGNORE_INDEX, build_dataset, encode_example
from ift.trainer import sft_config

ROWS = [
    {"input": "### Instruction:\nReverse the order of the words.\n\n### Response:", "output": "red dog cat"},
    {"input": "### Instruction:\nWhat is 2 plus one?\n\n### Response:", "output": "3"},
]


def test_encode_example_masks_prompt_and_appends_eos(tiny_tokenizer):
    prompt, answer = ROWS[0]["input"], ROWS[0]["output"]
    example = encode_example(prompt, answer, tiny_tokenizer)
    prompt_ids = tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tiny_tokenizer(answer, add_special_tokens=False)["input_ids"]
    assert example["input_ids"] == prompt_ids + answer_ids + [tiny_tokenizer.eos_token_id]
    assert example["completion_mask"] == [0] * len(prompt_ids) + [1] * (len(answer_ids) + 1)


def test_pad_token_is_distinct_from_eos(tiny_tokenizer):
    assert tiny_tokenizer.pad_token == "<|padding|>"
    assert tiny_tokenizer.eos_token == "<|endoftext|>"
    assert tiny_tokenizer.pad_token_id != tiny_tokenizer.eos_token_id


def test_trl_labels_and_collator_mask_prompt_and_padding(tiny_tokenizer, tiny_model, tmp_path):
    from trl import SFTTrainer

    dataset, stats = build_dataset(ROWS, tiny_tokenizer, max_length=128, source="rows")
    assert stats["examples"] == 2
    cfg = TrainConfig(max_steps=1, per_device_train_batch_size=2, padding_free=False)
    trainer = SFTTrainer(model=tiny_model, args=sft_config(cfg, 0, tmp_path, 2),
                         train_dataset=dataset, processing_class=tiny_tokenizer)
    prepared = [trainer.train_dataset[i] for i in range(2)]
    batch = trainer.data_collator(prepared)

    eos, pad = tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    for row in range(2):
        expected = encode_example(ROWS[row]["input"], ROWS[row]["output"], tiny_tokenizer)
        n = len(expected["input_ids"])
        labels = batch["labels"][row].tolist()
        ids = batch["input_ids"][row].tolist()
        for position in range(len(labels)):
            if position >= n:  # padding: pad token, not attended, not labelled
                assert ids[position] == pad and batch["attention_mask"][row][position] == 0
                assert labels[position] == IGNORE_INDEX
            elif expected["completion_mask"][position]:  # answer and EOS: labelled
                assert labels[position] == ids[position]
            else:  # prompt: never labelled
                assert labels[position] == IGNORE_INDEX
        assert labels[n - 1] == eos  # the model learns to stop


def test_too_long_examples_are_dropped_and_counted(tiny_tokenizer):
    rows = ROWS + [{"input": "word " * 300, "output": "x"}]
    dataset, stats = build_dataset(rows, tiny_tokenizer, max_length=64, source="rows")
    assert stats["dropped_too_long"] == 1 and len(dataset) == 2


def test_all_examples_too_long_is_a_clear_error(tiny_tokenizer):
    from ift.errors import UserError

    with pytest.raises(UserError, match=r"train.max_length=4 .*raise train.max_length"):
        build_dataset(ROWS, tiny_tokenizer, max_length=4, source="train.jsonl")


def test_packed_batches_label_only_answers_and_never_across_examples(tiny_tokenizer, tiny_model, tmp_path):
    """padding_free: one row, positions restart per example, and no prompt token is labelled."""
    from trl import SFTTrainer

    dataset, _ = build_dataset(ROWS, tiny_tokenizer, max_length=128, source="rows")
    cfg = TrainConfig(max_steps=1, per_device_train_batch_size=2, padding_free=True)
    trainer = SFTTrainer(model=tiny_model, args=sft_config(cfg, 0, tmp_path, 2),
                         train_dataset=dataset, processing_class=tiny_tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    expected = [encode_example(r["input"], r["output"], tiny_tokenizer) for r in ROWS]
    assert batch["input_ids"][0].tolist() == expected[0]["input_ids"] + expected[1]["input_ids"]
    assert batch["position_ids"][0].tolist() == [*range(len(expected[0]["input_ids"])),
                                                  *range(len(expected[1]["input_ids"]))]
    mask = expected[0]["completion_mask"] + expected[1]["completion_mask"]
    for label, token, answer in zip(batch["labels"][0].tolist(), batch["input_ids"][0].tolist(), mask):
        assert label == (token if answer else IGNORE_INDEX)
