"""moodboard runtime: the code that ships to Lambda. Never imports torch, transformers or optimum."""

__version__ = "0.1.0"
