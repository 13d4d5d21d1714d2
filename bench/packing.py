"""Bench: useful tokens per second of QLoRA training steps, packed vs unpacked, on the verbosity demo set.

Builds the tiny Qwen3 (remote_payload/tiny_model.py), loads it in 4-bit with LoRA exactly as training does
(tiny-verbosity recipe), and times optimizer steps over the same examples both ways, interleaved, N rounds:

  * unpacked: batches of 8 examples, right-padded to the longest (remote_payload.features.Collator);
  * packed:   batches of 8 packs of up to max_length tokens, flattened padding-free with restarting position ids
              (remote_payload.packing.PackedCollator, transformers' DataCollatorWithFlattening).

"Useful" tokens are the examples' own tokens (padding excluded), so both ways count the same work. Prints the
median tokens/s of each and the ratio packed / unpacked, plus the tokens computed per epoch both ways.

    .venv/bin/python bench/packing.py [-n 5] [--examples 192] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def batches(features, packed: bool, max_length: int, pad_id: int) -> list[dict]:
    from remote_payload.features import Collator, FeatureDataset
    from remote_payload.packing import PackedCollator, PackedDataset

    dataset = PackedDataset(features, max_length) if packed else FeatureDataset(features)
    collate = PackedCollator(pad_id) if packed else Collator(pad_id)
    return [collate([dataset[i] for i in range(s, min(s + 8, len(dataset)))]) for s in range(0, len(dataset), 8)]


def one_round(model, optimizer, prepared: list[dict]) -> float:
    started = time.perf_counter()
    for batch in prepared:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=5, help="rounds of each (default 5)")
    parser.add_argument("--examples", type=int, default=192, help="demo examples per round (default 192)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    from remote_payload.dataset import load_dataset
    from remote_payload.features import build_features
    from remote_payload.modeling import attach_lora, load_base_model, prepare_tokenizer
    from remote_payload.recipes import load_recipe
    from remote_payload.runtime_env import quiet_known_warnings
    from remote_payload.tiny_model import build_tiny_model

    quiet_known_warnings()
    recipe = load_recipe("tiny-verbosity")
    torch.set_num_threads(recipe.torch_threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny")
        tokenizer, style = prepare_tokenizer(model_dir)
        examples = load_dataset(ROOT / "training_data" / "verbosity_demo.jsonl").examples[: args.examples]
        features = build_features(tokenizer, examples, recipe.chat_template_kwargs, recipe.max_length).features
        model = attach_lora(load_base_model(model_dir, recipe, "sdpa"), recipe, style)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    prepared = {mode: batches(features, mode == "packed", recipe.max_length, tokenizer.pad_token_id)
                for mode in ("unpacked", "packed")}
    useful = sum(len(f.input_ids) for f in features)
    for mode in prepared:                      # warm-up: first calls allocate and dispatch-compile
        one_round(model, optimizer, prepared[mode][:2])
    seconds = {mode: [] for mode in prepared}
    for _ in range(args.n):
        for mode in prepared:
            seconds[mode].append(one_round(model, optimizer, prepared[mode]))
    rate = {mode: useful / statistics.median(s) for mode, s in seconds.items()}
    result = {"examples": len(features), "useful_tokens": useful, "rounds": args.n,
              "tokens_computed": {m: sum(b["input_ids"].numel() for b in prepared[m]) for m in prepared},
              "steps": {m: len(prepared[m]) for m in prepared},
              "useful_tokens_per_second": {m: round(r, 1) for m, r in rate.items()},
              "ratio_packed_over_unpacked": round(rate["packed"] / rate["unpacked"], 2)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{len(features)} demo examples, {useful} useful tokens, median of {args.n} rounds each")
        for mode in prepared:
            print(f"  {mode:<9} {result['steps'][mode]:>3} steps  {result['tokens_computed'][mode]:>6} tokens computed"
                  f"  {rate[mode]:>8.0f} useful tokens/s")
        print(f"packed / unpacked useful tokens/s: {result['ratio_packed_over_unpacked']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
