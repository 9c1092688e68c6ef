"""Answer extraction and normalisation: the one place that reads text answers.

Used by task parsers for metrics and, through them, by trainers for rewards.
"""

from __future__ import annotations

import re
import string
from typing import Sequence

from harness.parsed import Parsed
from harness.protocol import EXACT_LOWER, NO_TAGS, REQUIRED_TAGS, TWO_WAY_SUBSTRING, WHOLE_WORD, ProtocolProfile

_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL | re.IGNORECASE)
_THINK_TAG = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_WORD_NUMBERS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}


_ANSWER_TAG_LINE = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE)
_ANSWER_TAG_CLOSED = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)


def extract_answer(text: str, profile: ProtocolProfile, kind: str = "text") -> str | None:
    """The part of a model output that holds the answer, by the profile's rule
    (``kind="box"`` uses the profile's box-answer rule where it has one); None when the
    rule requires <answer> tags and the output has none."""
    mode = profile.box_answer_tags if kind == "box" and profile.box_answer_tags else profile.answer_tags
    if mode == NO_TAGS:
        return text.strip()
    if mode == REQUIRED_TAGS:
        m = (_ANSWER_TAG_CLOSED if profile.answer_tags_multiline else _ANSWER_TAG_LINE).search(text)
        return m.group(1).strip() if m else None
    m = _ANSWER_TAG.search(text)
    if m:
        return m.group(1).strip()
    return _THINK_TAG.sub("", text).strip()


def has_format_tags(text: str) -> bool:
    """``<think>...</think><answer>...</answer>``: the format reward of R1-style RL."""
    return re.fullmatch(r"\s*<think>.*?</think>\s*<answer>.*?</answer>\s*", text, re.DOTALL) is not None


def normalize_text(text: str) -> str:
    """The documented normalisation of class answers and labels: lower case, hyphens and
    underscores as spaces, other punctuation removed, articles (a, an, the) removed,
    whitespace collapsed. "The Great-White shark." -> "great white shark"."""
    text = text.lower().strip().replace("-", " ").replace("_", " ")
    text = text.translate(str.maketrans("", "", string.punctuation))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _squash(text: str) -> str:
    # Visual-RFT's normalisation: spaces and underscores removed, lower case
    return text.replace(" ", "").replace("_", "").lower()


def _dc_sft(text: str) -> str:
    return text.strip().strip(".").lower()


def read_label(answer: str, profile: ProtocolProfile) -> Parsed:
    """A class answer, normalised by the profile's rule. An empty answer is a parse
    failure, except under two-way substring matching, where the script it reproduces
    counts it as correct."""
    if profile.label_matching == TWO_WAY_SUBSTRING:
        return Parsed(answer, _squash(answer))
    label = _dc_sft(answer) if profile.label_matching == EXACT_LOWER else normalize_text(answer)
    if label:
        return Parsed(answer, label)
    return Parsed(answer, failure="empty answer" if not answer.strip() else "no words in the answer")


def match_label(prediction: str, label: str, profile: ProtocolProfile, synonyms: Sequence[str] = ()) -> bool:
    """Whether a class answer names the label (or, if the profile uses them, one of its
    synonyms) under the profile's rule."""
    names = [label, *synonyms] if profile.use_synonyms else [label]
    if profile.label_matching == TWO_WAY_SUBSTRING:
        # Visual-RFT's check, bug included: either way round, so "" (in every string)
        # and "dog" for "hot dog" both count
        pred = _squash(prediction)
        return any(_squash(n) in pred or pred in _squash(n) for n in names)
    if profile.label_matching == EXACT_LOWER:
        return any(_dc_sft(prediction) == _dc_sft(n) and _dc_sft(n) for n in names)
    pred = normalize_text(prediction)
    for name in names:
        gold = normalize_text(name)
        if not gold:
            continue
        if profile.label_matching == WHOLE_WORD:
            if re.search(rf"\b{re.escape(gold)}\b", pred) is not None:
                return True
        elif pred == gold:
            return True
    return False


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


# ----- Curr-ReFT's curriculum scorers (ding523/Curr_REFT@f123433) ------------------------------------
# Stage 1 (yes/no), stage 2 (choices) and the eval's option check, reproduced for rewards and
# the curr-reft profile; docs/tasks/math.md documents each formula.

_CURR_REFT_TAG_CLOSED = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_CURR_REFT_TAG_OPEN = re.compile(r"<answer>(.*?)(?:<answer>|$)", re.DOTALL)
_CURR_REFT_YES = re.compile(r"(?<![a-z])(yes|true|correct)(?![a-z])")
_CURR_REFT_NO = re.compile(r"(?<![a-z])(no|false|incorrect)(?![a-z])")
_CURR_REFT_LETTER = re.compile(r"(?<![A-Za-z])([A-E])(?![A-Za-z])")


def curr_reft_answer_content(text: str) -> str:
    """``extract_answer_content`` of its eval: a closed <answer> tag, else from an opening
    tag to the next one or the end, else the whole text (stripped)."""
    m = _CURR_REFT_TAG_CLOSED.search(text) or _CURR_REFT_TAG_OPEN.search(text)
    return m.group(1).strip() if m else text.strip()


def curr_reft_yes_no(text: str) -> str | None:
    """Stage 1's ``extract_yes_no_answers``: lower case; "yes"/"true"/"correct" as a word
    anywhere wins over "no"/"false"/"incorrect" ("no, not correct" reads as yes)."""
    content = text.lower().strip()
    if _CURR_REFT_YES.search(content):
        return "yes"
    if _CURR_REFT_NO.search(content):
        return "no"
    return None


def curr_reft_option_letters(text: str) -> list[str]:
    """Standalone letters A-E of the answer content after upper-casing, distinct, in order
    of first occurrence ("a" and "I choose b" count as letters)."""
    return list(dict.fromkeys(_CURR_REFT_LETTER.findall(curr_reft_answer_content(text).upper())))


def curr_reft_options(text: str) -> str:
    """``get_final_answer``: the option letters joined with commas ("" when there are none)."""
    return ",".join(curr_reft_option_letters(text))


def score_single_choice(pred: str | None, gold: str) -> float:
    """Stage 2, one correct option: 1 when the chosen option is the gold one."""
    return float(pred is not None and pred == gold)


def score_multi_choice(pred: Sequence[str], gold: Sequence[str], rule: str) -> float:
    """Several correct options, by ``rule`` (the profile's ``multichoice_rule``):

    * ``exact_set``: 1 when the chosen set equals the gold set;
    * ``partial`` (the paper's graduated reward, as we read it: its equation did not survive
      in our copy of the text): 1 when equal, |P| / |G| when the choice is a non-empty strict
      subset of the gold options (no wrong option), else 0;
    * ``ordered`` (the code, Stage2_choice_math_resize.py): the letters joined in order of
      first mention must equal the gold's, so "C, A" is wrong for "A, C".
    """
    if rule == "ordered":
        return float(",".join(dict.fromkeys(pred)) == ",".join(dict.fromkeys(gold)))
    p, g = set(pred), set(gold)
    if p == g:
        return 1.0 if g else 0.0
    if rule == "partial" and p and p < g:
        return len(p) / len(g)
    return 0.0


def discretised_iou_reward(ious: Sequence[float], profile: ProtocolProfile, threshold: float = 0.5) -> float:
    """Curr-ReFT's detection reward: the mean IoU of the matches that pass the threshold,
    discretised to 1 when that mean passes it too (``profile.iou_hit``: > 0.5 under curr-reft),
    else 0. For one box this is the grounding hit (boxes.grounding_scores' acc@0.5)."""
    valid = [v for v in ious if profile.iou_hit(v, threshold)]
    if not valid:
        return 0.0
    return float(profile.iou_hit(sum(valid) / len(valid), threshold))
