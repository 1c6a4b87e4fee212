"""The offline demo dataset: deterministic synthetic instruction-following tasks.

Records use the Alpaca schema (instruction, input, output). Some tasks put their data in
the input, some in the instruction (no input). Every answer follows from the instruction
and input, so a model can only score by learning the tasks, and every generated
(instruction, input) pair is unique, so a held-out split contains only unseen inputs.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ift.errors import UserError

# Short, common words (each one BPE token after training) in four categories, so that
# "which word is an animal?" has exactly one right answer.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "an animal": ("cat", "dog", "cow", "fox", "owl", "pig", "bee", "hen", "rat", "bat", "elk", "ant"),
    "a fruit": ("apple", "pear", "plum", "fig", "lime", "kiwi", "grape", "peach", "melon", "mango",
                "lemon", "date"),
    "a color": ("red", "blue", "green", "pink", "gray", "gold", "black", "white", "brown", "cyan",
                "teal", "tan"),
    "a tool": ("saw", "axe", "drill", "file", "rake", "hoe", "vise", "awl", "plane", "chisel",
               "wrench", "spade"),
}
WORDS: tuple[str, ...] = tuple(word for words in CATEGORIES.values() for word in words)
MAX_NUMBER = 99
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

Record = dict[str, str]


def _word_list(rng: random.Random, low: int, high: int) -> list[str]:
    return rng.sample(WORDS, rng.randint(low, high))


def reverse_words(rng: random.Random) -> Record:
    words = _word_list(rng, 3, 5)
    return {"instruction": "Reverse the order of the words.", "input": " ".join(words),
            "output": " ".join(reversed(words))}


def sort_words(rng: random.Random) -> Record:
    words = _word_list(rng, 3, 4)
    return {"instruction": "Sort the words in alphabetical order.", "input": " ".join(words),
            "output": " ".join(sorted(words))}


def pick_position(rng: random.Random) -> Record:
    words = _word_list(rng, 3, 6)
    position, index = rng.choice((("first", 0), ("second", 1), ("last", -1)))
    return {"instruction": f"What is the {position} word in the list?", "input": " ".join(words),
            "output": words[index]}


def pick_category(rng: random.Random) -> Record:
    category = rng.choice(tuple(CATEGORIES))
    others = [w for c, ws in CATEGORIES.items() if c != category for w in ws]
    words = rng.sample(others, rng.randint(2, 4))
    answer = rng.choice(CATEGORIES[category])
    words.insert(rng.randint(0, len(words)), answer)
    return {"instruction": f"Which word in the list is {category}?", "input": ", ".join(words),
            "output": answer}


def count_words(rng: random.Random) -> Record:
    words = _word_list(rng, 2, 7)
    return {"instruction": "How many words are in the list?", "input": " ".join(words),
            "output": str(len(words))}


def repeat_word(rng: random.Random) -> Record:
    word, times = rng.choice(WORDS), rng.randint(2, 4)
    return {"instruction": f"Repeat the word {word} {NUMBER_WORDS[times]} times.", "input": "",
            "output": " ".join([word] * times)}


def add_one(rng: random.Random) -> Record:
    number = rng.randint(0, MAX_NUMBER - 1)
    return {"instruction": f"What is {number} plus one?", "input": "", "output": str(number + 1)}


def join_words(rng: random.Random) -> Record:
    first, second = rng.sample(WORDS, 2)
    return {"instruction": f"Write the words {first} and {second} in reverse order.",
            "input": "", "output": f"{second} {first}"}


TASKS: tuple[Callable[[random.Random], Record], ...] = (
    reverse_words, sort_words, pick_position, pick_category, count_words, repeat_word,
    add_one, join_words,
)


def generate(num_examples: int, seed: int) -> list[Record]:
    """Return `num_examples` unique records, tasks interleaved, the same for the same seed."""
    rng = random.Random(seed)
    records: list[Record] = []
    seen: set[tuple[str, str]] = set()
    # Tasks take turns; a task with a small space (repeat_word: 48 words x 3 counts) just
    # yields fewer examples once its pairs are used up. Attempts are capped so an oversized
    # request fails clearly instead of looping forever.
    for attempt in range(50 * num_examples + 1000):
        if len(records) == num_examples:
            return records
        record = TASKS[attempt % len(TASKS)](rng)
        key = (record["instruction"], record["input"])
        if key in seen:
            continue
        seen.add(key)
        records.append(record)
    raise UserError(f"data.demo.num_examples={num_examples}: the demo tasks made only {len(records)} unique "
                    f"examples (seed {seed}); use at most that many, e.g. `dvc exp run -S "
                    f"data.demo.num_examples={len(records)}`")


def pretraining_text(rng: random.Random) -> str:
    """One document of the tiny base model's synthetic pretraining corpus.

    A base language model arrives knowing how to continue text: it copies what it has
    seen in its context and knows facts such as the order of numbers. The tiny model gets
    that from this corpus: lists of words repeated forwards or backwards, and runs of
    counting. It never contains the prompt template, an instruction or a task's answer.
    """
    if rng.random() < 0.25:
        start = rng.randint(0, MAX_NUMBER - 8)
        return " ".join(str(n) for n in range(start, start + rng.randint(3, 8)))
    segment = rng.sample(WORDS, rng.randint(3, 8))
    parts = [" ".join(segment if rng.random() < 0.5 else segment[::-1])
             for _ in range(rng.randint(2, 4))]
    return ("\n" if rng.random() < 0.5 else ", ").join(parts)


def pretraining_corpus(num_documents: int, seed: int) -> list[str]:
    """`num_documents` pretraining documents, the same for the same seed."""
    rng = random.Random(f"pretraining-{seed}")
    return [pretraining_text(rng) for _ in range(num_documents)]
