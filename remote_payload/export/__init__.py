"""Export a training adapter into what vLLM serves: `python -m remote_payload.export` (see __main__.py).

`record.py` (export.json) is stdlib-only and imported by the serving code; everything else needs the training
venv (torch, transformers, peft, safetensors).
"""
