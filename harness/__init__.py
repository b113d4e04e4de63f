"""infercheck: measure what LLM inference engines really do."""

__version__ = "0.1.0"
