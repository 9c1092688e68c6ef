"""The lmms-eval bridge (optional extra ``lmms``; docs/lmms.md).

Two directions, one scorer each:

* ``harness eval --tasks lmms:<task>`` runs an lmms-eval task through a harness
  :class:`~harness.backends.base.Backend`: :class:`harness.lmms.model.HarnessLMM` is an
  lmms-eval model object handed to ``lmms_eval.evaluator.simple_evaluate``; lmms-eval
  builds the prompts and scores the outputs (its metrics, its code), and
  :mod:`harness.lmms.run` lands them in the harness run directory (records and
  aggregates rows marked ``source: lmms-eval``) so ``harness leaderboard`` shows them.
* ``harness export-lmms DIR --tasks ...`` (:mod:`harness.lmms.export`) writes harness
  tasks as an lmms-eval task directory (``--include_path DIR``) whose
  ``process_results`` calls harness's own ``Task.evaluate``
  (:mod:`harness.lmms.exported`): lmms-eval users get harness's scores.

This module stays import-light (no lmms_eval, no torch): the evaluator asks it whether a
``--tasks`` list names lmms-eval tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import UsageError

PREFIX = "lmms:"
#: the role an lmms-eval task gets in tables and leaderboards unless its spec names one
DEFAULT_ROLE = "ood"
INSTALL_HINT = ("the lmms-eval bridge needs the optional extra: pip install -c .ci/lmms-constraints.txt "
                "torch==2.13.0 -e '.[lmms]' (the constraints keep a CPU torch; see docs/lmms.md)")


def is_lmms_spec(spec: str) -> bool:
    return spec.strip().startswith(PREFIX)


def has_lmms_tasks(specs: str | list[str]) -> bool:
    items = specs.split(",") if isinstance(specs, str) else specs
    return any(is_lmms_spec(s) for s in items)


@dataclass(frozen=True)
class LmmsRef:
    """``lmms:<task>[:id|:ood]``: an lmms-eval task (or group) name and its leaderboard role."""

    task: str
    role: str = DEFAULT_ROLE

    @property
    def full_name(self) -> str:
        """The task's name in harness run directories and leaderboards."""
        return f"{PREFIX}{self.task}"


def parse_spec(spec: str) -> LmmsRef:
    body = spec.strip()[len(PREFIX):]
    name, _, role = body.partition(":")
    if not name.strip():
        raise UsageError(f"{spec!r}: name an lmms-eval task after 'lmms:', e.g. lmms:mme")
    role = role.strip() or DEFAULT_ROLE
    if role not in ("id", "ood"):
        raise UsageError(f"{spec!r}: the role after the task name must be id or ood, got {role!r}")
    return LmmsRef(name.strip(), role)


def split_specs(specs: list[str]) -> tuple[list[str], list[LmmsRef]]:
    """(harness task specs, lmms-eval task refs) of a ``--tasks`` list, each in order."""
    ours = [s for s in specs if s.strip() and not is_lmms_spec(s)]
    refs = list({r.task: r for r in (parse_spec(s) for s in specs if is_lmms_spec(s))}.values())
    return ours, refs
