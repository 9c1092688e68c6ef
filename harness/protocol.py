"""Protocol profiles: every scoring choice that changes numbers, named and logged.

A run records the profile it was scored under; ``harness score --profile`` re-scores
saved outputs under another one and ``harness compare-profiles RUN`` under all of
them, so differences between evaluation scripts become a table instead of a mystery.

``strict`` is our default. The paper profiles reproduce what each paper's (or tool's)
evaluation script does, setting by setting; where a script is lenient or buggy the
profile reproduces the bug on purpose, and its ``source`` says where the behaviour
comes from. docs/profiles.md has the table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from harness.errors import UnknownName, UsageError

# How a class answer is compared with the label (and its synonyms):
EXACT = "exact"  # our normalisation (answers.normalize_text), then equality
WHOLE_WORD = "lenient"  # a normalised name occurs in the prediction as whole words
# Visual-RFT: spaces and underscores removed, lower case, then ``gt in pred or pred in gt``:
# lenient both ways, and an empty answer is "in" every label, so it counts as correct
TWO_WAY_SUBSTRING = "two_way_substring"
# DC-SFT: ``strip().strip('.').lower()`` on both sides, then equality
EXACT_LOWER = "exact_lower"
LABEL_MATCHING = (EXACT, WHOLE_WORD, TWO_WAY_SUBSTRING, EXACT_LOWER)

# How the answer is taken out of the output (answers.extract_answer):
OPTIONAL_TAGS = "optional"  # inside <answer>...</answer> if present (unclosed too), else the output minus <think>
REQUIRED_TAGS = "required"  # a closed <answer>...</answer> must be present, else the answer is empty
NO_TAGS = "none"  # the whole output
ANSWER_TAGS = (OPTIONAL_TAGS, REQUIRED_TAGS, NO_TAGS)

# Which written boxes count (boxes.BOX_SYNTAX holds the patterns):
BOX_SYNTAXES = ("any", "json_int", "pairs_int", "list_float")

# Multi-label answers: "exact_set" (normalised names, sets equal) or Curr-ReFT's
# "words_superset" (case-sensitive words split on commas/whitespace; correct when every
# gold word is predicted, extra predictions are not penalised)
MULTILABEL_RULES = ("exact_set", "words_superset")

# How detection answers are read (boxes.parse_detections / parse_detections_visual_rft)
# and what a stated confidence becomes
DET_FORMATS = ("tolerant", "visual_rft")
DET_CONFIDENCES = ("clip", "raw")

# Math answers (docs/tasks/math.md has the rules and the table of where they differ)
MATH_RULES = ("strict", "mathvista", "lmms-eval", "curr-reft")
COUNT_RULES = ("number", "substring")
MULTICHOICE_RULES = ("exact_set", "partial", "ordered")


@dataclass(frozen=True)
class ProtocolProfile:
    name: str = "strict"
    # ----- answer extraction
    answer_tags: str = OPTIONAL_TAGS
    # Visual-RFT's tag regex has no DOTALL: an answer spanning lines is not found
    answer_tags_multiline: bool = True
    # The same for box answers, where a paper's grounding script differs from its
    # classification script (None: as answer_tags)
    box_answer_tags: str | None = None
    # ----- labels
    label_matching: str = EXACT
    # Count a class's other names (ImageNet's WordNet synonyms) as correct
    use_synonyms: bool = True
    multilabel_rule: str = "exact_set"
    # ----- boxes
    box_syntax: str = "any"
    # Which box of an answer that writes several is scored: "first" or "last".
    box_pick: str = "first"
    # Read boxes in this coordinate space whatever the model family's convention
    # (lmms-eval asks every model for 0-1 boxes; Curr-ReFT compares raw output with
    # original pixels); None: the model's own. Prompts then ask for this space too.
    box_space: str | None = None
    # Truncate parsed coordinates to integers (int(float(v)), Curr-ReFT)
    int_coords: bool = False
    # Put a box written with x2 < x1 (or y2 < y1) back in order; False: such a box is
    # degenerate and scores IoU 0.
    reorder_corners: bool = True
    # Clip predicted boxes to the image before IoU.
    clip_boxes: bool = True
    # ----- IoU
    # Legacy inclusive-pixel area convention (w = x2 - x1 + 1).
    plus_one_pixel: bool = False
    # The intersection counts only where the overlap is wider and taller than this many
    # pixels (VLM-R1's IoU, shared by Curr-ReFT and DC-SFT, drops overlaps of <= 1 px)
    min_overlap_px: float = 0.0
    # Detection matching threshold (grounding reports ACC at 0.5, 0.75 and 0.9).
    iou_threshold: float = 0.5
    # True: a hit is IoU >= threshold; False: IoU > threshold (scripts differ).
    iou_inclusive: bool = True
    # ----- detection
    # "tolerant": JSON or Python-literal lists of {'Position' | 'bbox_2d' | ...: box,
    # 'Confidence': c}, bare boxes, truncated lists keep their complete entries;
    # "visual_rft": its eval script's JSON repair and json.loads (anything else: no boxes)
    det_format: str = "tolerant"
    # Drop exact duplicate boxes of an answer (Visual-RFT's remove_duplicates); False:
    # a duplicate is a false positive
    det_dedup: bool = False
    # A stated confidence is the detection's score: "clip" to [0, 1], or "raw" as written
    # (a missing, non-numeric or non-finite one gets the rank score either way)
    det_confidence: str = "clip"
    # ----- math (harness/math_answers.py)
    # How a math answer is read and compared: "strict" (our rules, numeric comparison),
    # "mathvista" (its calculate_score.py: shortcuts, Levenshtein-nearest option, int()
    # truncation, str(round(x, p)) string equality), "lmms-eval" (its copy: precision
    # passed as HF's float, strip() on both sides), "curr-reft" (its eval: option letters,
    # two-way substring, solution anywhere in the output)
    math_rule: str = "strict"
    # Counting answers: "number" (the answer's number equals the count) or "substring"
    # (Curr-ReFT OOD: str(count) occurs anywhere in the raw output)
    count_rule: str = "number"
    # Answers naming several options: "exact_set", "partial" (paper: |P|/|G| when no wrong
    # option is picked) or "ordered" (Curr-ReFT's code: option letters joined in order, equal strings)
    multichoice_rule: str = "exact_set"
    description: str = "our default: exact match after normalisation, with synonyms; IoU >= t; boxes in the model's own space"
    source: str = "harness"

    def __post_init__(self) -> None:
        for field_name, allowed in (("label_matching", LABEL_MATCHING), ("answer_tags", ANSWER_TAGS),
                                    ("box_syntax", BOX_SYNTAXES), ("box_pick", ("first", "last")),
                                    ("multilabel_rule", MULTILABEL_RULES), ("math_rule", MATH_RULES),
                                    ("count_rule", COUNT_RULES), ("multichoice_rule", MULTICHOICE_RULES)):
            if getattr(self, field_name) not in allowed:
                raise UsageError(f"profile {self.name}: {field_name} must be one of {allowed}")
        if self.det_format not in DET_FORMATS or self.det_confidence not in DET_CONFIDENCES:
            raise UsageError(f"profile {self.name}: det_format must be one of {DET_FORMATS} and det_confidence "
                             f"one of {DET_CONFIDENCES}")
        if self.box_answer_tags is not None and self.box_answer_tags not in ANSWER_TAGS:
            raise UsageError(f"profile {self.name}: box_answer_tags must be one of {ANSWER_TAGS}")

    def iou_hit(self, value: float, threshold: float | None = None) -> bool:
        t = self.iou_threshold if threshold is None else threshold
        return value >= t if self.iou_inclusive else value > t

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProtocolProfile:
        data = dict(data)
        if "use_answer_tags" in data and "answer_tags" not in data:  # run configs written before answer_tags
            data["answer_tags"] = OPTIONAL_TAGS if data["use_answer_tags"] else NO_TAGS
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def settings(self) -> dict[str, Any]:
        """The settings that change numbers (no name or prose)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("name", "description", "source")}


STRICT = ProtocolProfile()
LENIENT = replace(STRICT, name="lenient", label_matching=WHOLE_WORD,
                  description="as strict, but a label counts when it occurs in the answer as whole words")

# Each paper profile: what that script does, read from its code (docs/profiles.md quotes it).
# Settings a script does not exercise (e.g. boxes in a classification-only script) keep
# the strict values.
VISUAL_RFT = ProtocolProfile(
    name="visual-rft", answer_tags=REQUIRED_TAGS, answer_tags_multiline=False, box_answer_tags=NO_TAGS,
    label_matching=TWO_WAY_SUBSTRING, use_synonyms=False, box_syntax="pairs_int", box_space="norm1000",
    reorder_corners=False, clip_boxes=False, iou_inclusive=False,
    det_format="visual_rft", det_dedup=True, det_confidence="raw",
    description="Visual-RFT: <answer> required (one line); spaces/underscores dropped, lower case, two-way substring "
                "(an empty answer counts); LISA: first (x1,y1),(x2,y2) of integers in the whole output, 0-1000 space, "
                "mean IoU; detection reward IoU > 0.5; COCO/LVIS: its JSON repair, 0-1000 boxes unclipped, exact "
                "duplicates dropped, confidences as written",
    source="Liuziyu77/Visual-RFT@9486633 classification/Qwen2_VL_classification_infere.py, "
           "lisa_evaluation/Qwen2_VL_lisa_infere.py, src/virft/src/open_r1/grpo.py, "
           "coco_evaluation/Qwen2_VL_coco_infere.py, lvis_evaluation/Qwen2_VL_lvis_infere.py")
VLM_R1 = ProtocolProfile(
    name="vlm-r1", answer_tags=REQUIRED_TAGS, box_syntax="json_int", box_pick="last", reorder_corners=False,
    clip_boxes=False, min_overlap_px=1.0, iou_inclusive=False,
    description="VLM-R1 REC: <answer> required; last [x1,y1,x2,y2] of integers inside a {...} JSON object; boxes in "
                "the model's space (Qwen2.5-VL resized pixels, rescaled); overlaps <= 1 px ignored; IoU > 0.5",
    source="om-ai-lab/VLM-R1@90052f4 src/eval/test_rec_r1.py (rescaling since 00755a2, 2025-06-26)")
LMMS_EVAL = ProtocolProfile(
    name="lmms-eval", answer_tags=NO_TAGS, box_syntax="list_float", box_space="norm1", reorder_corners=False,
    clip_boxes=False, iou_inclusive=True, math_rule="lmms-eval",
    description="lmms-eval refcoco_bbox_rec: first [a, b, c, d] of floats anywhere in the output, read as 0-1 "
                "coordinates whatever the model; IoU >= t; exact match for labels; MathVista as MathVista's "
                "script but with HF's float precision (float answers never match) and strip() before equality",
    source="EvolvingLMMs-Lab/lmms-eval@75571cf lmms_eval/tasks/refcoco/utils_rec.py, "
           "lmms_eval/tasks/mathvista/mathvista_evals.py")
CURR_REFT = ProtocolProfile(
    name="curr-reft", answer_tags=OPTIONAL_TAGS, label_matching=EXACT, use_synonyms=False,
    multilabel_rule="words_superset", box_syntax="list_float", box_pick="last", box_space="abs", int_coords=True,
    reorder_corners=False, clip_boxes=False, min_overlap_px=1.0, iou_inclusive=False, math_rule="curr-reft",
    count_rule="substring", multichoice_rule="ordered",
    description="Curr-ReFT: <answer> if present; multi-label correct when every gold word is predicted "
                "(case-sensitive); last [x1,y1,x2,y2] in the answer, truncated to integers and compared with "
                "original-image pixels (no rescaling); overlaps <= 1 px ignored; IoU > 0.5; math: option letters "
                "equal (none on both sides counts), two-way substring, or the solution anywhere; counting: the "
                "count anywhere in the output; multi-choice: letters joined in order",
    source="ding523/Curr_REFT@f123433 eval/muti_process_eval.py, "
           "train_code/grpo/open-r1-multimodal/src/open_r1/Stage{1,2}_*_math_resize.py")
DC_SFT = ProtocolProfile(
    name="dc-sft", answer_tags=NO_TAGS, label_matching=EXACT_LOWER, use_synonyms=False, box_syntax="list_float",
    reorder_corners=False, clip_boxes=False, min_overlap_px=1.0, iou_inclusive=True,
    description="DC-SFT: the whole output; strip, strip '.', lower case, then equality; first [a, b, c, d] of "
                "floats; overlaps <= 1 px ignored; IoU >= 0.5",
    source="byyx666/DC-SFT@87b87b7 infer/test_dp.py")

MATHVISTA = replace(
    STRICT, name="mathvista", answer_tags=NO_TAGS, math_rule="mathvista",
    description="MathVista's own scoring: the whole response; exact-response shortcuts, else the LLM judge (our "
                "rules stand in when none is configured); nearest option by edit distance, int() truncation, "
                "str(round(x, precision)) and string equality",
    source="lupantech/MathVista@53d5258 evaluation/extract_answer.py, evaluation/calculate_score.py")

PROFILES: dict[str, ProtocolProfile] = {p.name: p for p in (STRICT, LENIENT, VISUAL_RFT, VLM_R1, LMMS_EVAL, CURR_REFT,
                                                              DC_SFT, MATHVISTA)}


def register_profile(profile: ProtocolProfile) -> ProtocolProfile:
    if profile.name in PROFILES and PROFILES[profile.name] != profile:
        raise ValueError(f"protocol profile {profile.name!r} is already registered")
    PROFILES[profile.name] = profile
    return profile


def get_profile(name: str) -> ProtocolProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UnknownName(f"unknown protocol profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None


def profile_names() -> list[str]:
    """strict first, then the rest in registration order (the order of comparison tables)."""
    return list(PROFILES)
