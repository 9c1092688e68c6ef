"""Answer extraction and normalisation: the one place that reads text answers.

Used by task parsers for metrics and, through them, by trainers for rewards.
"""

from __future__ import annotations

import re
import string

from harness.protocol import ProtocolProfile

_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL | re.IGNORECASE)
_THINK_TAG = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_WORD_NUMBERS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}


def extract_answer(text: str, profile: ProtocolProfile) -> str:
    """The part of a model output that holds the answer."""
    if profile.use_answer_tags:
        m = _ANSWER_TAG.search(text)
        if m:
            return m.group(1).strip()
        text = _THINK_TAG.sub("", text)
    return text.strip()


def has_format_tags(text: str) -> bool:
    """``<think>...</think><answer>...</answer>``: the format reward of R1-style RL."""
    return re.fullmatch(r"\s*<think>.*?</think>\s*<answer>.*?</answer>\s*", text, re.DOTALL) is not None


def normalize_text(text: str) -> str:
    text = text.lower().strip()
    text = text.translate(str.maketrans("", "", string.punctuation))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def match_label(prediction: str, label: str, profile: ProtocolProfile) -> bool:
    pred, gold = normalize_text(prediction), normalize_text(label)
    if not gold:
        return False
    if profile.label_matching == "lenient":
        return re.search(rf"\b{re.escape(gold)}\b", pred) is not None
    return pred == gold


def parse_number(text: str) -> float | None:
    """First number in ``text`` (digits, or an English number word)."""
    m = _NUMBER.search(text)
    if m:
        return float(m.group(0))
    for word in normalize_text(text).split():
        if word in _WORD_NUMBERS:
            return float(_WORD_NUMBERS[word])
    return None


def parse_choice(text: str, n_options: int) -> int | None:
    """Index of the option letter the text answers with (``B``, ``(B)``, ``B. ...``)."""
    letters = string.ascii_uppercase[:n_options]
    stripped = text.strip()
    m = re.match(rf"^\(?([{letters}])\)?(?:[.):\s]|$)", stripped)
    if m is None:
        # The words are case-insensitive, the letter is not: "the answer is a square" names no option
        # (and a lower-case letter must not reach letters.index below).
        m = re.search(rf"\b(?:answer|option)\s*(?:is)?\s*:?\s*\(?((?-i:[{letters}]))\)?\b", stripped, re.IGNORECASE)
    return letters.index(m.group(1)) if m else None


def parse_yesno(text: str) -> bool | None:
    words = normalize_text(text).split()
    if not words:
        return None
    if words[0] in ("yes", "true"):
        return True
    if words[0] in ("no", "false"):
        return False
    return None
