"""One answer-extraction function reads yes/no answers the way inference does (seed 003's metrics-showing-0
story), and the scores count unparseable answers as wrong."""

from __future__ import annotations

import pytest

from remote_payload.answers import answer_text, extract_answer
from remote_payload.scoring import disagreements, score

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("text, expected", [
    ("Yes", "Yes"),
    ("no", "No"),
    ("No.", "No"),
    ("  YES, they will love it", "Yes"),
    ("<think>\nThe user likes dramas, so no? Actually yes.\n</think>\n\nNo", "No"),
    ("<think>\n\n</think>\n\nYes", "Yes"),
    ("I think the answer is no, but yes is possible", "No"),       # the first label word wins
    ("Yesss!", "Yes"),                                              # seed 003's fallback: only one word inside
    ("Maybe", None),
    ("<think>\nstill thinking about it, yes", None),               # cut off while thinking: no answer
    ("", None),
    ("nobody knows", "No"),             # seed 003's substring fallback, kept so scores compare with the seed's
    ("yes and no", "Yes"),
])
def test_extract_answer_reads_the_first_label_word_after_the_thinking_block(text, expected):
    assert extract_answer(text) == expected


def test_the_seed_003_full_sequence_decoding_no_longer_reads_as_unparseable():
    # what seed 003's metric decoded, whose "starts with yes/no" check returned None for every example
    decoded = ("system\nYou are a movie recommendation assistant...\nuser\nUser's last 15 watched movies: ... "
               "Answer Yes or No.\nassistant\n<think>\n\n</think>\n\nNo")
    assert extract_answer(decoded) == "No"
    assert answer_text("<|im_start|>assistant\n<think>\n\n</think>\n\nYes") == "Yes"


def test_label_words_other_than_yes_no_are_read_as_the_recipe_spells_them():
    assert extract_answer("LIKE", positive="Like", negative="Dislike") == "Like"
    assert extract_answer("dislike it", positive="Like", negative="Dislike") == "Dislike"


def test_scores_count_unparseable_answers_as_wrong_and_f1_is_that_of_the_positive_label():
    labels = ["Yes", "Yes", "Yes", "No", "No", "No"]
    predictions = ["Yes", "No", None, "No", "Yes", None]
    s = score(labels, predictions, "Yes", "No")
    assert s["confusion"] == {"tp": 1, "fp": 1, "tn": 1, "fn": 2, "unparseable_positive": 1,
                              "unparseable_negative": 1}
    assert (s["accuracy"], s["precision"], s["recall"]) == (round(2 / 6, 6), 0.5, round(1 / 3, 6))
    assert s["f1"] == round(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3), 6) and s["unparseable"] == 2
    assert s["support"] == {"Yes": 3, "No": 3}


def test_disagreements_say_who_was_right_where_two_models_differ():
    labels = ["Yes", "No", "Yes", "No"]
    d = disagreements(labels, base=["No", "No", None, "Yes"], tuned=["Yes", "No", "No", "No"])
    assert d == {"count": 3, "indices": [0, 2, 3], "tuned_right_base_wrong": 2, "base_right_tuned_wrong": 0,
                 "both_wrong": 1}
