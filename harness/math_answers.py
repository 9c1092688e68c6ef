"""Math answers: rule-based extraction, MathVista's normalisation and equality, and the
Curr-ReFT checks, selected by the profile's ``math_rule`` (docs/tasks/math.md).

A problem is described the way MathVista stores it (:class:`MathProblem`): question type
(``multi_choice`` / ``free_form``), answer type (``text`` / ``integer`` / ``float`` /
``list``), the gold answer as a string, the choices, the precision. Every other math
family (Math360K / Geo170K conversations, Curr-ReFT rows, counting) maps onto it.

Nothing here evaluates model text: numbers are read with regular expressions and
``float()``/``int()`` on matched digits only (MathVista's own shortcuts call ``int()`` and
``float()`` on the whole response, which is safe and reproduced as is).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from harness import answers

MULTI_CHOICE, FREE_FORM = "multi_choice", "free_form"
ANSWER_TYPES = ("text", "integer", "float", "list")

# A number as written in answers: sign, thousands separators, decimals, an optional "/d" fraction.
_NUM = re.compile(r"(?<![\w.])([-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+−]?\.\d+)(?:\s*/\s*(\d+(?:\.\d+)?))?")
_ANSWER_PHRASE = re.compile(r"(?<![<\w/])(?:final\s+answer|answer)(?![\w>])\s*(?:is|:|=)?\s*:?", re.IGNORECASE)
_TAGGED = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL | re.IGNORECASE)
_BRACKETS = re.compile(r"\[([^\[\]]*)\]")


@dataclass(frozen=True)
class MathProblem:
    question_type: str = FREE_FORM
    answer_type: str = "integer"
    answer: str = ""
    choices: tuple[str, ...] = ()
    precision: float | None = None
    unit: str | None = None
    #: the question as posed (the judge's prompt shows it)
    query: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def gold_index(self) -> int | None:
        return self.choices.index(self.answer) if self.answer in self.choices else None


@dataclass(frozen=True)
class MathResult:
    extraction: str | None  # what was read (MathVista's "extraction"); None: nothing
    prediction: Any  # the normalised value compared with the gold answer
    correct: bool
    failure: str | None = None  # why nothing could be read (a parse failure)


# ----- numbers -------------------------------------------------------------------------------

def _to_float(token: str, denominator: str | None = None) -> float | None:
    try:
        value = float(token.replace(",", "").replace("−", "-"))
        if denominator is not None:
            d = float(denominator)
            value = value / d if d else math.nan
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def numbers(text: str) -> list[float]:
    """Every finite number written in ``text`` in order (``1,000`` is one number, ``3/4`` is 0.75)."""
    out = []
    for m in _NUM.finditer(text):
        v = _to_float(m.group(1), m.group(2))
        if v is not None:
            out.append(v)
    return out


def _tail(text: str) -> str:
    """The text after the last "answer is"/"answer:" phrase, else the whole text."""
    last = None
    for m in _ANSWER_PHRASE.finditer(text):
        last = m
    return text[last.end():] if last else text


def extract_number(text: str) -> float | None:
    """The first number after the last "answer is" phrase; without one, the last number."""
    tail = _tail(text)
    if tail is not text:
        found = numbers(tail)
        if found:
            return found[0]
    found = numbers(text)
    return found[-1] if found else None


def fmt_number(value: float) -> str:
    """3.0 -> "3", 3.5 -> "3.5": how a number is written into an extraction string."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def extract_list(text: str) -> list[float] | list[str] | None:
    """The last ``[...]`` in the answer (numbers, else stripped strings); without brackets,
    every number after the last "answer is" phrase (or in the whole text)."""
    found = _BRACKETS.findall(text)
    if found:
        items = [i.strip().strip("'\"") for i in found[-1].split(",") if i.strip()]
        nums = [_to_float(i) for i in items]
        if items and all(n is not None for n in nums):
            return nums  # type: ignore[return-value]
        return items or None
    nums = numbers(_tail(text)) or numbers(text)
    return nums or None


def fmt_list(items: list) -> str:
    """Python's ``str(list)`` of the items as MathVista writes list answers: "[2014, 2016]"."""
    return "[" + ", ".join(fmt_number(i) if isinstance(i, float) else repr(i) for i in items) + "]"


# ----- choices --------------------------------------------------------------------------------

def extract_choice(text: str, choices: tuple[str, ...] | list[str]) -> int | None:
    """The option an answer names, by letter or by option text, or None.

    In order: the letter after the last "answer is" phrase; a leading letter ("B", "(B)",
    "B. 8/11"); the first parenthesised letter "(B)"; the option text equal to the answer
    after normalisation; the one option whose text occurs in the answer as whole words.
    Letters are upper case and must be one of the options' letters."""
    n = len(choices)
    if n == 0 or not text.strip():
        return None
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n]
    stripped = text.strip()
    tail = _tail(stripped)
    if tail is not stripped:
        m = re.match(rf"\s*\(?([{letters}])\)?(?![A-Za-z0-9])", tail)
        if m:
            return letters.index(m.group(1))
    m = re.match(rf"^\(?([{letters}])\)?(?:[.):,\s]|$)", stripped)
    if m:
        return letters.index(m.group(1))
    m = re.search(rf"\(([{letters}])\)", stripped)
    if m:
        return letters.index(m.group(1))
    norm = answers.normalize_text(tail)
    norm_choices = [answers.normalize_text(str(c)) for c in choices]
    raw_choices = [str(c).strip() for c in choices]
    for i, (c, raw) in enumerate(zip(norm_choices, raw_choices)):
        if (c and c == norm) or raw == tail.strip().rstrip("."):
            return i
    hits = [i for i, c in enumerate(norm_choices) if c and re.search(rf"(?<!\w){re.escape(c)}(?!\w)", norm)]
    return hits[0] if len(hits) == 1 else None


# ----- rule-based extraction (our extractor; the judge's stand-in) -----------------------------

def rule_extraction(text: str, problem: MathProblem) -> str | None:
    """What the answer says, written as MathVista's extraction field would hold it: an
    option letter, a number, or a list in Python's ``str(list)`` form. None: nothing found."""
    tagged = _TAGGED.search(text)  # what a judge would read too: the tagged answer if there is one
    if tagged:
        text = tagged.group(1)
    if problem.question_type == MULTI_CHOICE:
        idx = extract_choice(text, problem.choices)
        return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[idx] if idx is not None else None
    if problem.answer_type in ("integer", "float"):
        value = extract_number(text)
        return fmt_number(value) if value is not None else None
    if problem.answer_type == "list":
        items = extract_list(text)
        return fmt_list(items) if items else None
    tail = _tail(text).strip().rstrip(".").strip()
    return tail or None


# ----- strict comparison ----------------------------------------------------------------------

def _places(problem: MathProblem) -> int | None:
    try:
        return int(problem.precision) if problem.precision is not None and math.isfinite(problem.precision) else None
    except (TypeError, ValueError):
        return None


def _num_equal(pred: float, gold: float, places: int | None) -> bool:
    if places is not None:
        return round(pred, places) == round(gold, places)
    return abs(pred - gold) <= 1e-9 * max(1.0, abs(gold))


def strict_compare(extraction: str, problem: MathProblem) -> tuple[Any, bool]:
    """(normalised prediction, correct) under our rules: the option index; an integer
    answer must be that integer (3.7 is not 3); a float is rounded to the precision on
    both sides; a list matches element by element (numbers numerically)."""
    if problem.question_type == MULTI_CHOICE:
        idx = extract_choice(extraction, problem.choices)
        return idx, idx is not None and idx == problem.gold_index
    if problem.answer_type in ("integer", "float"):
        pred = extract_number(extraction)
        gold = _to_float(problem.answer.strip())
        if pred is None or gold is None:
            return pred, False
        if problem.answer_type == "integer":
            return pred, pred == int(pred) and pred == gold
        return pred, _num_equal(pred, gold, _places(problem))
    if problem.answer_type == "list":
        pred_items, gold_items = extract_list(extraction), extract_list(problem.answer)
        if not pred_items or not gold_items or len(pred_items) != len(gold_items):
            return pred_items, False
        ok = all(_num_equal(p, g, None) if isinstance(p, float) and isinstance(g, float)
                 else answers.normalize_text(str(p)) == answers.normalize_text(str(g))
                 for p, g in zip(pred_items, gold_items))
        return pred_items, ok
    pred_text = answers.normalize_text(extraction)
    return pred_text, bool(pred_text) and pred_text == answers.normalize_text(problem.answer)


# ----- MathVista's own rules (reproduced) ---------------------------------------------------------

def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character), as
    python-Levenshtein's ``distance`` computes it."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def mathvista_shortcut(response: str, problem: MathProblem, quick_extract: bool = False) -> str | None:
    """MathVista's ``extract_answer`` before it asks GPT: "" for an empty response; the
    response itself when it is one of the choices; ``str(int(response))`` /
    ``str(float(response))`` when the whole response converts. None: the script would now
    ask its LLM judge."""
    if response == "":
        return ""
    if problem.question_type == MULTI_CHOICE and response in problem.choices:
        return response
    if problem.answer_type == "integer":
        try:
            return str(int(response))
        except (ValueError, OverflowError):
            pass
    if problem.answer_type == "float":
        try:
            return str(float(response))
        except (ValueError, OverflowError):
            pass
    if quick_extract:
        m = re.search(r'The answer is "(.*)"\.', response)
        if m:
            return m.group(1)
    return None


def mathvista_normalize(extraction: Any, problem: MathProblem, variant: str = "mathvista",
                        ignore_empty: bool = False) -> Any:
    """``normalize_extracted_answer`` of MathVista's calculate_score.py (``variant="mathvista"``)
    or of lmms-eval's copy (``"lmms-eval"``), bugs included:

    * multiple choice: the first "(x)" letter, upper-cased; a letter in range is that option's
      text, anything else becomes the option with the smallest edit distance, so an empty
      extraction picks the shortest option;
    * integer: ``str(int(float(x)))`` (3.7 -> "3"); float: ``str(round(float(x), int(precision)))``
      (lmms-eval passes HF's float64 precision without ``int()``, so ``round`` raises and the
      prediction is None); list: ``str(x)``; anything that raises: None.
    """
    if problem.question_type == MULTI_CHOICE:
        extraction = extraction.strip() if isinstance(extraction, str) else str(extraction)
        if ignore_empty and not extraction:
            return None
        letter = re.findall(r"\(([a-zA-Z])\)", extraction)
        if letter:
            extraction = letter[0].upper()
        options = [chr(ord("A") + i) for i in range(len(problem.choices))]
        if extraction in options:
            return problem.choices[options.index(extraction)]
        distances = [levenshtein(extraction, c) for c in problem.choices]
        return problem.choices[distances.index(min(distances))]
    try:
        if problem.answer_type == "integer":
            return str(int(float(extraction)))
        if problem.answer_type == "float":
            places = float(problem.precision) if variant == "lmms-eval" else int(problem.precision)  # type: ignore[arg-type]
            return str(round(float(extraction), places))  # type: ignore[call-overload]
        if problem.answer_type == "list":
            return str(extraction)
    except (TypeError, ValueError, OverflowError):
        return None
    return extraction


def mathvista_equal(prediction: Any, answer: Any, variant: str = "mathvista") -> bool:
    """``safe_equal``: ``prediction == answer`` (MathVista); lmms-eval compares
    ``str(x).strip()`` of both."""
    if variant == "lmms-eval":
        return str(prediction).strip() == str(answer).strip()
    return prediction == answer


# ----- Curr-ReFT's math check (reproduced) --------------------------------------------------------

def curr_reft_math_correct(output: str, solution: str) -> bool:
    """Curr-ReFT's in-domain math check (eval/muti_process_eval.py), on the raw output:
    (1) math_verify's symbolic equality (not installed here: our numeric equality of the
    last numbers stands in); (2) the option letters of output and solution equal
    (``get_final_answer``: standalone A-E after upper-casing, so two answers with no letter
    at all are equal); (3) ``gt in pred or pred in gt`` on the answer contents (an empty
    answer is in everything); (4) the solution anywhere in the output."""
    pred_num, gold_num = numbers(output), numbers(solution)
    if pred_num and gold_num and _num_equal(pred_num[-1], gold_num[-1], None):
        return True
    if answers.curr_reft_options(output) == answers.curr_reft_options(solution):
        return True
    gt, pred = answers.curr_reft_answer_content(solution), answers.curr_reft_answer_content(output)
    return gt in pred or pred in gt or solution in output


# ----- one entry point ------------------------------------------------------------------------------

def score_math(answer: str, output: str, problem: MathProblem, rule: str, solution: str | None = None,
               judge: Any = None) -> MathResult:
    """Read and score one math answer under ``rule`` (the profile's ``math_rule``).

    ``answer`` is the profile-extracted answer text, ``output`` the raw model output (the
    Curr-ReFT check reads it), ``solution`` the gold as the Curr-ReFT rows write it (default
    the gold answer). ``judge``: a callable ``(response, problem) -> str | None`` (the LLM
    judge, harness/math_judge.py) or None (our rules extract)."""
    if rule == "curr-reft":
        ok = curr_reft_math_correct(output, solution if solution is not None else problem.answer)
        return MathResult(answer, answer, ok)
    if rule in ("mathvista", "lmms-eval"):
        response = answer.strip() if rule == "lmms-eval" else answer
        extraction = mathvista_shortcut(response, problem) if response or rule == "mathvista" else ""
        if extraction is None:
            if judge is not None:
                extraction = judge(response, problem)
                extraction = "" if extraction is None else extraction  # the script's failed request
            else:
                extraction = rule_extraction(response, problem) or ""  # our rules stand in for GPT
        prediction = mathvista_normalize(extraction, problem, rule)
        return MathResult(extraction, prediction, mathvista_equal(prediction, problem.answer, rule))
    # strict
    if not answer.strip():
        return MathResult(None, None, False, failure="empty answer")
    extraction = judge(answer, problem) if judge is not None else None
    if not extraction:
        extraction = rule_extraction(answer, problem)
    if extraction is None:
        kind = "option" if problem.question_type == MULTI_CHOICE else problem.answer_type
        return MathResult(None, None, False, failure=f"no {kind} answer")
    prediction, ok = strict_compare(extraction, problem)
    if prediction is None:
        return MathResult(extraction, None, False, failure="unreadable answer")
    return MathResult(extraction, prediction, ok)


def score_count(answer: str, output: str, count: int, rule: str) -> MathResult:
    """A counting answer: ``number`` reads the answer's number (as :func:`extract_number`);
    ``substring`` is Curr-ReFT's OOD check, ``str(count) in output`` on the raw output
    ("13" counts for 3, and a wrong answer that mentions the number anywhere counts)."""
    if rule == "substring":
        return MathResult(answer, answer, str(count) in output)
    if not answer.strip():
        return MathResult(None, None, False, failure="empty answer")
    value = extract_number(answer)
    if value is None:
        word = answers.parse_number(answer)
        value = word
    if value is None:
        return MathResult(None, None, False, failure="no number")
    return MathResult(fmt_number(value), value, value == count)
