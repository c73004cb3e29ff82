"""retune: Re-Tuning (recursive tuning of LLMs) you can run, measure and look inside."""

__version__ = "0.1.0"
