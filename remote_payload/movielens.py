"""The MovieLens yes/no recommendation prompt of seed 003, in one place.

Seed 003 trains on records `{"instruction", "input", "output": "Yes"|"No", "system"}` and tests on raw records
`{"history_titles": [...], "candidate_title", "label", "user_id"}`. A raw record becomes the same conversation a
training record does: system prompt, then one user turn "<instruction>\\n\\n<input>" with the input laid out as
below. `training_data/make_movielens_demo.py` writes its training records with these same functions, so both
formats render to identical prompts. Stdlib only.
"""

from __future__ import annotations

# Seed 003's check_seq_len walk-through shows the system prompt and the instruction only up to "...": their first
# words are the seed's ("You are a movie recommendation assistant", "Predict whether the user will like the
# candidate movie"); the rest says what the answer must look like.
SYSTEM_PROMPT = ("You are a movie recommendation assistant. Given the movies a user watched recently, you "
                 "predict whether they will like a candidate movie. Answer with Yes or No only.")
INSTRUCTION = "Predict whether the user will like the candidate movie. Answer Yes or No."


def render_input(history_titles: list[str], candidate_title: str) -> str:
    """Seed 003's input layout: "User's last 15 watched movies:\\n1. Pearl Harbor (2001) (rating ≈ 3.0)\\n..."."""
    lines = [f"User's last {len(history_titles)} watched movies:"]
    lines += [f"{i}. {title}" for i, title in enumerate(history_titles, start=1)]
    return "\n".join(lines) + f"\n\nCandidate movie: {candidate_title}"


def user_turn(instruction: str, extra: str) -> str:
    """How an {instruction, input} record becomes the user's text (the same join for every task)."""
    instruction, extra = instruction.strip(), extra.strip()
    return f"{instruction}\n\n{extra}" if instruction and extra else instruction or extra
