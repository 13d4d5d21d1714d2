"""The small HTTP API of seed 002 in front of vLLM: `POST /generate` and `GET /health`.

    python -m remote_payload.serve.api --export DIR [--base BASE] [--vllm-url http://127.0.0.1:8000]
                                       [--port 8080] [--host 127.0.0.1] [--timeout 300]

Runs in the *serving* venv: it needs the export's tokenizer (transformers, which vLLM pins and loads the same
way) plus FastAPI/uvicorn/httpx, all of which vLLM already depends on, so it adds nothing to install and
tokenizes with exactly the library version vLLM detokenizes with. The training venv would also have
transformers, but it is not on a serving-only instance and pins a transformers vLLM does not support.

`POST /generate {"prompt": str, "style": "terse"|"verbose", "max_new_tokens"?: int, "temperature"?: float,
"top_p"?: float, "system"?: str}` renders the prompt with `remote_payload.prompting.encode_prompt` -- the
renderer training used, with the recipe's chat-template kwargs -- and sends the token ids to vLLM's
`/v1/completions`, suppressing the two style tokens in the output as evaluation does. Defaults per style are
the recipe's evaluation presets. Answer: `{"response", "style", "tokens" (vLLM's usage.completion_tokens),
"latency" (seconds, this request end to end), "finish_reason", "model"}`.
`GET /health`: 200 `{"status": "healthy", ...}` only when vLLM's /health answers and /v1/models lists the
served model; 503 `{"status": "unhealthy", "reason"}` otherwise.
Errors are JSON: 422 `{"error", "field", "message", "errors"}` for a malformed request (the field named), 400
when vLLM refuses the request, 502/503 when vLLM fails or does not answer.
"""

# no `from __future__ import annotations`: FastAPI reads the request model from the real annotation

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ..export.record import read_export
from ..prompting import encode_prompt, stop_token_ids
from ..recipes import recipe_from_dict
from ..styles import STYLE_TOKENS, normalize_style

MAX_PROMPT_CHARS = 32_000


def generation_eos_ids(model_dir: Path) -> list[int]:
    path = model_dir / "generation_config.json"
    if not path.is_file():
        return []
    value = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
    return [value] if isinstance(value, int) else [v for v in value or [] if isinstance(v, int)]


class Backend:
    """What a request needs: tokenizer, recipe presets, stop ids and the vLLM endpoint."""

    def __init__(self, export_dir: Path, base_dir: Path | None, vllm_url: str, timeout: float):
        from transformers import AutoTokenizer

        self.record = read_export(export_dir)
        self.recipe = recipe_from_dict(self.record["recipe"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(export_dir))
        model_dir = export_dir if self.record["kind"] != "lora" else (base_dir or export_dir)

        class _Config:
            eos_token_id = generation_eos_ids(model_dir)

        self.stop_ids = stop_token_ids(self.tokenizer, _Config())
        self.style_ids = [self.tokenizer.convert_tokens_to_ids(t) for t in STYLE_TOKENS.values()]
        self.model = self.record["served_name"]
        self.vllm_url = vllm_url.rstrip("/")
        self.timeout = timeout

    def completion_body(self, request) -> dict[str, Any]:
        section = self.recipe.evaluation
        preset = section.terse if request.style == "TERSE" else section.verbose
        messages = ([{"role": "system", "content": request.system}] if request.system else []) + [
            {"role": "user", "content": request.prompt}]
        ids = encode_prompt(self.tokenizer, messages, request.style, self.recipe.chat_template_kwargs)
        temperature = request.temperature if request.temperature is not None else (
            preset.temperature if preset.do_sample else 0.0)
        body = {"model": self.model, "prompt": ids, "temperature": temperature,
                "max_tokens": request.max_new_tokens or preset.max_new_tokens,
                "min_tokens": preset.min_new_tokens, "stop_token_ids": self.stop_ids,
                "logit_bias": {str(i): -100 for i in self.style_ids}, "skip_special_tokens": True}
        top_p = request.top_p if request.top_p is not None else (preset.top_p if preset.do_sample else None)
        if top_p is not None:
            body["top_p"] = top_p
        return body


def create_app(backend: Backend):
    from contextlib import asynccontextmanager

    import httpx
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, field_validator

    class GenerateRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
        style: str
        max_new_tokens: int | None = Field(default=None, ge=1, le=8192)
        temperature: float | None = Field(default=None, ge=0.0, le=2.0)
        top_p: float | None = Field(default=None, gt=0.0, le=1.0)
        system: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)

        @field_validator("prompt")
        @classmethod
        def _prompt(cls, value: str) -> str:
            if not value.strip():
                raise ValueError("must contain non-whitespace text")
            if any(token in value for token in STYLE_TOKENS.values()):
                raise ValueError("must not contain a style token; say the style in the style field")
            return value

        @field_validator("style", mode="before")
        @classmethod
        def _style(cls, value: Any) -> str:
            style = normalize_style(value)
            if style is None:
                raise ValueError(f"must be 'terse' or 'verbose' (got {value!r})")
            return style

    client = httpx.AsyncClient(base_url=backend.vllm_url, timeout=backend.timeout,
                               limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))

    @asynccontextmanager
    async def lifespan(_app):
        yield
        await client.aclose()

    app = FastAPI(title="orch /generate", docs_url=None, redoc_url=None, lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError):
        errors = []
        for error in exc.errors():
            loc = [str(part) for part in error.get("loc", ()) if part != "body"]
            field = ".".join(loc) or "body"
            if error.get("type") == "json_invalid":
                field, message = "body", "is not valid JSON"
            elif error.get("type") == "extra_forbidden":
                message = "is not a known field (prompt, style, max_new_tokens, temperature, top_p, system)"
            elif error.get("type") == "missing":
                message = "is required"
            elif error.get("type") == "model_attributes_type":
                field, message = "body", "must be a JSON object"
            else:
                message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
            errors.append({"field": field, "message": message})
        first = errors[0] if errors else {"field": "body", "message": "is invalid"}
        return JSONResponse(status_code=422, content={"error": "invalid request", **first, "errors": errors})

    @app.post("/generate")
    async def generate(request: GenerateRequest):
        started = time.monotonic()
        body = backend.completion_body(request)
        try:
            reply = await client.post("/v1/completions", json=body)
        except httpx.HTTPError as exc:
            return JSONResponse(status_code=503, content={"error": "vLLM is not answering",
                                                          "message": f"{type(exc).__name__}: {exc}"})
        if reply.status_code >= 400:
            status = 400 if reply.status_code < 500 else 502
            return JSONResponse(status_code=status, content={"error": "vLLM refused the request" if status == 400
                                                             else "vLLM failed", "message": reply.text[:2000]})
        data = reply.json()
        choice = data["choices"][0]
        return {"response": choice["text"], "style": request.style.lower(),
                "tokens": data["usage"]["completion_tokens"], "latency": round(time.monotonic() - started, 4),
                "finish_reason": choice.get("finish_reason"), "model": backend.model}

    @app.get("/health")
    async def health():
        try:
            alive = await client.get("/health", timeout=5)
            models = await client.get("/v1/models", timeout=5)
        except httpx.HTTPError as exc:
            return JSONResponse(status_code=503, content={"status": "unhealthy", "vllm": backend.vllm_url,
                                                          "reason": f"vLLM is not answering ({type(exc).__name__})"})
        listed = [m.get("id") for m in models.json().get("data", [])] if models.status_code == 200 else []
        if alive.status_code != 200 or backend.model not in listed:
            reason = (f"vLLM /health answered {alive.status_code}" if alive.status_code != 200 else
                      f"{backend.model!r} is not among vLLM's models {listed}")
            return JSONResponse(status_code=503, content={"status": "unhealthy", "vllm": backend.vllm_url,
                                                          "reason": reason, "models": listed})
        return {"status": "healthy", "model": backend.model, "kind": backend.record["kind"],
                "vllm": backend.vllm_url, "models": listed}

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m remote_payload.serve.api", description=__doc__.split("\n")[0])
    parser.add_argument("--export", required=True, type=Path, help="the export vLLM serves")
    parser.add_argument("--base", type=Path, help="base model directory (lora exports: its generation_config)")
    parser.add_argument("--vllm-url", default="http://127.0.0.1:8000")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one vLLM request may take")
    args = parser.parse_args(argv)
    import uvicorn

    from ..export.record import NotAnExport

    try:
        backend = Backend(args.export.resolve(), args.base.resolve() if args.base else None, args.vllm_url,
                          args.timeout)
    except NotAnExport as exc:
        print(f"api: {exc}", flush=True)
        return 2
    uvicorn.run(create_app(backend), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
