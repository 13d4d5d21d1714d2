"""orch: drive existing GPU instances over plain SSH to fine-tune LLMs."""

__version__ = "0.1.0"
