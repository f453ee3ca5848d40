"""SIMU's TOFU metrics (seeds/003, Table 1): per-example exact match (EM) of a greedy answer and
the paper's aggregate of EM, ROUGE-L and MIA. Functions of strings and numbers, no model.

EM is not defined in the paper. Its printed values are multiples of 1/400 (forget10,
retain_perturbed) and 1/117 (world facts), so it is a binary score per item, averaged over the
split; ``exact_match`` is that score. The aggregate is the mean of five terms, oriented so that
higher is better: ``simu_aggregate``.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np


def normalise_answer(text: str) -> str:
    """``text`` as EM compares it: case-folded, every run of whitespace one space, the ends
    stripped of whitespace and of trailing punctuation (a sentence's full stop, a closing
    quote), so that "Paris." and " paris " are the same answer."""
    text = " ".join(text.casefold().split())
    end = len(text)
    while end and (text[end - 1].isspace() or unicodedata.category(text[end - 1]).startswith("P")):
        end -= 1
    return text[:end]


def exact_match(generation: str, answer: str) -> float:
    """1.0 when the normalised gold ``answer`` occurs in the normalised ``generation`` as a run
    of whole words, else 0.0. Equality after normalisation is the special case of a generation
    that is just the answer; a generation that is only part of the answer scores 0, and so does
    the answer inside a longer word ("Nile" in "Niles").

    Why containment and not equality: TOFU's world-facts answers are one or two words ("Paris",
    "Nile"; 1.6 words on average) while a model fine-tuned on TOFU answers in sentences ("The
    Eiffel Tower is in Paris, France."). The printed 86.32% (101/117) world-facts EM of the
    original LLaMA2-7B, beside a ROUGE-L of 0.8960, would under equality need it to answer 101 of
    117 questions with the bare words; containment asks only that the words be there. Either
    reading keeps EM at most the mean ROUGE-L recall (a matched answer has recall 1), as the
    original models' rows do (retain 85.75% vs 0.9825, 78.75% vs 0.8239); the unlearned models'
    forget rows do not (e.g. 20% vs 0.0241), which no string reading explains.
    """
    gold = normalise_answer(answer)
    if not gold:
        raise ValueError(f"exact match needs an answer with words, got {answer!r}")
    whole_words = rf"(?<!\w){re.escape(gold)}(?!\w)"
    return float(re.search(whole_words, normalise_answer(generation)) is not None)


def simu_aggregate(em_forget: float, rouge_forget: float, mia: float, em_retain: float, rouge_retain: float) -> float:
    """SIMU's TOFU aggregate: mean(1 - EM_F, 1 - ROUGE_F, 1 - MIA, EM_R, ROUGE_R), every part a
    fraction in [0, 1] (EM as a fraction, not the paper's percent). World facts are not in it:
    this is the five-term mean that reproduces the paper's Table 1 (the text's sentence names
    the kinds of terms, not which)."""
    parts = {"em_forget": em_forget, "rouge_forget": rouge_forget, "mia": mia,
             "em_retain": em_retain, "rouge_retain": rouge_retain}
    for name, value in parts.items():
        if not 0 <= value <= 1:
            raise ValueError(f"simu_aggregate's {name} is a fraction in [0, 1], got {value}")
    return float(np.mean([1 - em_forget, 1 - rouge_forget, 1 - mia, em_retain, rouge_retain]))
