"""What an exported task's ``utils.py`` runs inside lmms-eval: harness's prompt text,
images and, above all, harness's own scorer (``Task.evaluate``), so an lmms-eval run of
an exported task gets exactly harness's numbers (one concept, one place).

Each exported task directory holds ``harness_task.json`` (which harness task and format,
the protocol profile, the model conventions its prompts were written for, the data
options) next to ``data.jsonl`` (one document per sample: ``sample_id``, ``index``,
``prompt``, ``target``, ``images`` as paths relative to the directory). Scoring needs
the task's :class:`~harness.sample.Sample` (targets can be boxes, sets, numbers): it is
rebuilt by streaming the harness task once (pixels are never decoded for that) and
looked up by sample id.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from harness.conventions import ModelConventions
from harness.errors import UsageError

SETTINGS_FILE = "harness_task.json"
DATA_FILE = "data.jsonl"


class ExportedTask:
    """The harness side of one exported lmms-eval task (what its ``utils.py`` calls)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        settings_path = self.directory / SETTINGS_FILE
        try:
            self.settings: dict[str, Any] = json.loads(settings_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{settings_path}: not a harness export ({exc}); rerun harness export-lmms") from None
        self._task = None
        self._samples: dict[str, Any] | None = None
        self._lock = threading.Lock()

    # ----- harness objects -------------------------------------------------------
    @property
    def task(self):
        if self._task is None:
            from harness import data
            from harness.taskspec import make_task

            s = self.settings
            if s.get("data_root") or s.get("data_args"):
                data.configure(s.get("data_root"), s.get("data_args") or {})
            self._task = make_task(s["task"], s["format"])
        return self._task

    @property
    def conventions(self) -> ModelConventions:
        return ModelConventions.from_dict(self.settings["conventions"])

    @property
    def profile(self):
        from harness.protocol import ProtocolProfile

        return ProtocolProfile.from_dict(self.settings["profile_settings"])

    def sample(self, doc: dict[str, Any]):
        """The harness Sample a document was made from (streamed once, then looked up)."""
        with self._lock:  # lmms-eval scores documents from several threads
            if self._samples is None:
                last = int(self.settings["last_index"])
                samples: dict[str, Any] = {}
                for index, sample in enumerate(self.task.samples()):
                    if index > last:
                        break
                    samples[str(sample.id)] = sample
                self._samples = samples
        try:
            return self._samples[str(doc["sample_id"])]
        except KeyError:
            raise UsageError(f"{self.settings['task']}: no sample {doc.get('sample_id')!r}; the export does not match "
                             "this harness version or data root: rerun harness export-lmms") from None

    # ----- lmms-eval's hooks -----------------------------------------------------
    def doc_to_visual(self, doc: dict[str, Any]) -> list[Image.Image]:
        out = []
        for rel in doc.get("images") or []:
            with Image.open(self.directory / rel) as im:
                out.append(im.convert("RGB"))
        return out

    def doc_to_text(self, doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> str:
        return doc["prompt"]

    def doc_to_target(self, doc: dict[str, Any]) -> str:
        return doc["target"]

    def score(self, doc: dict[str, Any], output: str) -> tuple[Any, dict[str, float]]:
        """(Parsed, per-sample metrics) of one output: ``Task.evaluate`` on the document's sample."""
        return self.task.evaluate(output, self.sample(doc), self.conventions, self.profile)

    def process_results(self, doc: dict[str, Any], results: list[Any]) -> dict[str, float]:
        output = results[0] if results else ""
        if isinstance(output, list):  # repeats: the first completion is scored, as in harness
            output = output[0] if output else ""
        _, scores = self.score(doc, output if isinstance(output, str) else str(output))
        return {m: float(scores[m]) for m in self.task.metrics}


_OPEN: dict[str, ExportedTask] = {}


def load(directory: str | Path) -> ExportedTask:
    """The exported task in ``directory`` (one object per directory and process)."""
    key = str(Path(directory).resolve())
    if key not in _OPEN:
        _OPEN[key] = ExportedTask(key)
    return _OPEN[key]
