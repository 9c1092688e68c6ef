"""A harness :class:`~harness.backends.base.Backend` as an lmms-eval model object.

:class:`HarnessLMM` is an ``lmms_eval.api.model.lmms`` (a "simple" model: lmms-eval
hands it a context string plus the document's visuals). Each ``generate_until`` request
becomes a harness :class:`~harness.prompt.Prompt` (the images first, then the text, as
every harness backend renders it with the model's own chat template), requests with the
same generation settings are batched through ``Backend.generate``, and lmms-eval's stop
strings (``until``) cut the text afterwards, as its own models do.

Every generated output is appended to an outputs file as soon as its batch is done;
a rerun reads it back and generates only what is missing (resume), provided the
prompt and settings are the same.

Not supported (our backends generate text only): ``loglikelihood`` (lmms-eval's
``multiple_choice``/``loglikelihood`` tasks), multi-round and agentic generation, and
video inputs.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

from lmms_eval.api.model import lmms
from PIL import Image

from harness.backends.base import Backend, SamplingParams
from harness.errors import UsageError
from harness.prompt import Prompt
from harness.records import RecordWriter, read_records
from harness.sample import ImageRef

DEFAULT_MAX_NEW_TOKENS = 128  # lmms-eval's models' default when a task sets none


def _image_ref(visual: Any, uri: str) -> ImageRef:
    if isinstance(visual, Image.Image):
        image = visual
        return ImageRef(uri=uri, size=image.size, loader=lambda: image)
    if isinstance(visual, (str, Path)) and Path(visual).suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp",
                                                                              ".gif", ".tif", ".tiff"):
        return ImageRef.from_path(str(visual))
    raise ValueError(f"unsupported visual {type(visual).__name__} "
                     f"{str(visual)[:80]!r}: the harness bridge passes images only (no video or audio)")


def truncate(text: str, until: list[str]) -> str:
    """The text before the first stop string (lmms-eval's ``until``)."""
    cut = len(text)
    for stop in until:
        if stop:
            at = text.find(stop)
            if at != -1:
                cut = min(cut, at)
    return text[:cut]


class HarnessLMM(lmms):
    """lmms-eval model over a harness backend. ``outputs_dir`` (optional) keeps every
    output for resume; ``max_new_tokens``/``temperature``/``top_p`` (optional) override
    the tasks' generation settings; ``seed_for(task, block)`` seeds sampled batches."""

    is_simple = True

    def __init__(self, backend: Backend, *, batch_size: int = 8, max_new_tokens: int | None = None,
                 temperature: float | None = None, top_p: float | None = None,
                 seed_for: Callable[[str, int], int] | None = None, outputs_dir: str | Path | None = None,
                 progress: bool = True) -> None:
        super().__init__()
        self.backend = backend
        self.batch_size = int(batch_size)
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed_for = seed_for or (lambda task, block: block)
        self.outputs_dir = Path(outputs_dir) if outputs_dir else None
        self.progress = progress
        #: (task, doc_id) -> the output line (output, failure, latency) of this or an earlier run
        self.outputs: dict[tuple[str, str], dict[str, Any]] = {}
        self.generated = 0
        self.reused = 0

    # ----- lmms-eval interface -------------------------------------------------------
    def loglikelihood(self, requests):
        raise UsageError("lmms-eval asked for log-likelihoods (a multiple_choice or loglikelihood task): harness "
                         "backends generate text only; use a generate_until task")

    def generate_until_multi_round(self, requests):
        raise UsageError("multi-round lmms-eval tasks are not supported by the harness bridge")

    def generate_until(self, requests) -> list[str]:
        from tqdm.auto import tqdm

        by_task: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            by_task.setdefault(req.args[4], []).append(i)
        results: list[str | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), disable=not self.progress, unit="sample", desc="lmms-eval", dynamic_ncols=True)
        for task, idxs in by_task.items():
            self._load_outputs(task)
            writer = RecordWriter(self._outputs_path(task)) if self.outputs_dir else None
            idxs.sort(key=lambda i: int(requests[i].args[3]))
            # batches aligned to position // batch_size over the task's requests whatever was done
            # before, so a resumed run groups and seeds them as an uninterrupted one
            blocks: dict[int, list[int]] = {}
            for pos, i in enumerate(idxs):
                key = self._key(requests[i])
                done = self.outputs.get((task, key[0]))
                if done is not None and done.get("prompt_hash") == key[1]:
                    results[i] = done["output"]
                    self.reused += 1
                    bar.update(1)
                else:
                    blocks.setdefault(pos // self.batch_size, []).append(i)
            for block, members in sorted(blocks.items()):
                lines = self._run_batch(task, block, [requests[i] for i in members])
                for i, line in zip(members, lines):
                    results[i] = line["output"]
                    self.outputs[(task, line["doc_id"])] = line
                if writer is not None:
                    writer.append(lines)
                self.generated += len(members)
                bar.update(len(members))
            if writer is not None:
                writer.sync()
        bar.close()
        return [r if r is not None else "" for r in results]

    # ----- helpers ------------------------------------------------------------------
    def _params(self, gen_kwargs: dict[str, Any], seed: int) -> SamplingParams:
        g = dict(gen_kwargs or {})
        temperature = float(g.get("temperature") or 0.0) if g.get("do_sample", True) else 0.0
        if self.temperature is not None and self.temperature > 0:
            temperature = self.temperature
        top_p = g.get("top_p")
        top_p = float(top_p) if isinstance(top_p, (int, float)) and 0 < top_p <= 1 else 1.0
        if self.top_p is not None:
            top_p = self.top_p
        max_new = self.max_new_tokens or int(g.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS)
        return SamplingParams(max_new_tokens=max_new, temperature=temperature, top_p=top_p, seed=seed)

    @staticmethod
    def _until(gen_kwargs: dict[str, Any]) -> list[str]:
        until = (gen_kwargs or {}).get("until") or []
        return [until] if isinstance(until, str) else [str(u) for u in until]

    def _key(self, req) -> tuple[str, str]:
        """(doc id, hash of what decides the output: context and generation settings)."""
        ctx, gen_kwargs = req.args[0], req.args[1]
        blob = json.dumps([ctx, gen_kwargs, self.max_new_tokens, self.temperature, self.top_p], sort_keys=True,
                          default=str)
        return str(req.args[3]), hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _prompt(self, req) -> Prompt:
        ctx, _, doc_to_visual, doc_id, task, split = req.args[:6]
        visuals = doc_to_visual(self.task_dict[task][split][doc_id]) if doc_to_visual is not None else None
        if visuals is None:
            visuals = []
        elif not isinstance(visuals, (list, tuple)):
            visuals = [visuals]
        images = tuple(_image_ref(v, f"lmms://{task}/{split}/{doc_id}/{k}") for k, v in enumerate(visuals))
        return Prompt(text=str(ctx).replace("<image>", "").strip(), images=images)

    def _run_batch(self, task: str, block: int, reqs: list) -> list[dict[str, Any]]:
        from harness.evaluator import _generate

        params = self._params(reqs[0].args[1], self.seed_for(task, block))
        prompts: list[Prompt | None] = []
        failures: list[str | None] = []
        for req in reqs:
            try:
                prompts.append(self._prompt(req))
                failures.append(None)
            except Exception as exc:  # a visual we cannot pass: this sample fails, the others go on
                prompts.append(None)
                failures.append(f"generation error: {type(exc).__name__}: {exc}")
        live = [p for p in prompts if p is not None]
        t0 = time.perf_counter()
        outs, fails = _generate(self.backend, live, params) if live else ([], [])
        per = (time.perf_counter() - t0) / max(1, len(live))
        lines = []
        it = iter(zip(outs, fails))
        for req, prompt, failure in zip(reqs, prompts, failures):
            if prompt is not None:
                out, failure = next(it)
                text = truncate(out[0] if out else "", self._until(req.args[1]))
            else:
                text = ""
            doc_id, prompt_hash = self._key(req)
            lines.append({"task": task, "doc_id": doc_id, "prompt_hash": prompt_hash, "output": text,
                          "failure": failure, "latency_s": round(per, 6) if prompt is not None else None,
                          "prompt": prompt.text if prompt is not None else None})
        return lines

    def _outputs_path(self, task: str) -> Path:
        return self.outputs_dir / f"{task.replace('/', '_')}.outputs.jsonl"

    def _load_outputs(self, task: str) -> None:
        if not self.outputs_dir:
            return
        for line in read_records(self._outputs_path(task), repair=True, required=("doc_id", "output")):
            failure = line.get("failure")
            if isinstance(failure, str) and failure.startswith("generation error"):
                continue  # generated again, as harness retries failed generations on resume
            self.outputs[(task, str(line["doc_id"]))] = line
