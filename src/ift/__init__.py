"""ift: a declarative, reproducible instruction-finetuning pipeline."""

__version__ = "0.1.0"
