"""Generate the MovieLens-like demo set of the `tiny-movielens` recipe (seed 003's formats, synthetic data).

    python training_data/make_movielens_demo.py      # rewrites training_data/movielens_demo_{train,eval,test}.jsonl

Each synthetic user has a favourite of six genres. An example shows four movies the user watched (all of that
genre, the genre in brackets as MovieLens lists it) and a candidate movie; the answer is "Yes" exactly when the
candidate's genre appears in the history -- a rule a model can learn from the text alone. Half the examples are
"Yes". (With two liked genres per user the tiny CPU model needs several times more steps to learn the rule.)
Users are split three ways, so evaluation and test users are never seen in training:

* `movielens_demo_train.jsonl`: seed 003's training format {"instruction", "input", "output", "system"};
* `movielens_demo_eval.jsonl`: the same format, other users (evaluation during training, early stopping);
* `movielens_demo_test.jsonl`: seed 003's raw test format {"history_titles", "candidate_title", "label",
  "user_id"}, yet other users (what `evaluate` scores).

Prompts come from `remote_payload/movielens.py`, the functions the payload renders test records with, so both
formats give identical prompts. Deterministic (seeded): rerunning gives byte-identical files.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from remote_payload.movielens import INSTRUCTION, render_input  # noqa: E402
from remote_payload.recipes.tiny_movielens import SYSTEM_PROMPT  # noqa: E402

OUT = ROOT / "training_data"
SEED = 2003
HISTORY = 4
SPLITS = {"train": (160, 6), "eval": (24, 4), "test": (40, 5)}   # split -> (users, examples per user)

GENRES = {
    "Action": ["Fist", "Fury", "Bullet", "Strike", "Chase", "Fire", "Steel", "Blast"],
    "Comedy": ["Party", "Crazy", "Funny", "Goofy", "Prank", "Laugh", "Silly", "Joke"],
    "Drama": ["Letters", "Winter", "River", "Silence", "Father", "Promise", "Rain", "Home"],
    "Horror": ["Ghost", "Blood", "Night", "Grave", "Curse", "Scream", "Dark", "Bones"],
    "Romance": ["Love", "Heart", "Kiss", "Wedding", "Summer", "Rose", "Dance", "Darling"],
    "Sci-Fi": ["Galaxy", "Robot", "Star", "Alien", "Planet", "Orbit", "Laser", "Mars"],
}


def title(rng: random.Random, genre: str) -> str:
    first, second = rng.sample(GENRES[genre], 2)
    return f"{first} {second} [{genre}]"


def example(rng: random.Random, favourite: str, positive: bool) -> tuple[list[str], str]:
    history = [title(rng, favourite) for _ in range(HISTORY)]
    others = [g for g in GENRES if g != favourite]
    return history, title(rng, favourite if positive else rng.choice(others))


def split_records(rng: random.Random, split: str, first_user: int) -> list[dict]:
    users, per_user = SPLITS[split]
    records = []
    for user in range(first_user, first_user + users):
        favourite = rng.choice(sorted(GENRES))
        for i in range(per_user):
            positive = (user + i) % 2 == 0
            history, candidate = example(rng, favourite, positive)
            if split == "test":
                records.append({"user_id": user, "history_titles": history, "candidate_title": candidate,
                                "label": int(positive)})
            else:
                records.append({"instruction": INSTRUCTION, "input": render_input(history, candidate),
                                "output": "Yes" if positive else "No", "system": SYSTEM_PROMPT})
    rng.shuffle(records)
    return records


def main() -> int:
    rng = random.Random(SEED)
    first_user = 1
    for split in SPLITS:
        records = split_records(rng, split, first_user)
        first_user += SPLITS[split][0]
        path = OUT / f"movielens_demo_{split}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        print(f"{path.relative_to(ROOT)}: {len(records)} examples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
