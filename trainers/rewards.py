"""GRPO reward components, as TRL reward functions.

- ``task``: the task's own scorer, ``Task.reward(completion, sample, conv, profile)``
  (the primary metric the evaluator reports), so reward and metric cannot drift.
- ``format``: 1 when the completion is ``<think>...</think><answer>...</answer>``
  (R1 / Visual-RFT style, checked by ``harness.answers.has_format_tags``), else 0.

TRL logs each component separately per step (``rewards/task/mean``,
``rewards/task/std``, ``rewards/format/mean``, ...) and optimises their weighted
sum (``reward_weights``). The scorer reads the answer inside ``<answer>`` tags when
the protocol profile says so (the strict default does), so tagged completions are
scored on their answer.
"""

from __future__ import annotations

from typing import Any

from harness import answers
from harness.conventions import ModelConventions
from harness.protocol import ProtocolProfile

#: Visual-RFT's instruction (its classification prompt), appended to the task's question
FORMAT_INSTRUCTION = ("Output the thinking process in <think> </think> and final answer in <answer> </answer> tags.")


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or assistant messages (conversational prompts)."""
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion:
        content = message.get("content", "")
        if isinstance(content, str):
            parts.append(content)
        else:
            parts += [c.get("text", "") for c in content if isinstance(c, dict)]
    return "".join(parts)


class TaskReward:
    """``Task.reward`` of each completion; the dataset's ``row`` column (forwarded by TRL,
    repeated per generation) says which training row, hence which task format and sample."""

    __name__ = "task"  # TRL names the logged component after it

    def __init__(self, rows: Any, conv: ModelConventions, profile: ProtocolProfile, meter: Any = None) -> None:
        self.rows = rows
        self.conv = conv
        self.profile = profile
        self.meter = meter

    def __call__(self, prompts: list, completions: list, row: list[int], completion_ids: list | None = None,
                 **_: Any) -> list[float]:
        if self.meter is not None and completion_ids is not None:
            self.meter.generated_tokens += sum(len(ids) for ids in completion_ids)
        out = []
        for completion, index in zip(completions, row):
            r = self.rows[int(index)]
            out.append(float(r.task.reward(completion_text(completion), r.sample, self.conv, self.profile)))
        return out


def format_reward(completions: list, **_: Any) -> list[float]:
    return [float(answers.has_format_tags(completion_text(c))) for c in completions]


format_reward.__name__ = "format"
