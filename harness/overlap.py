"""Train/test overlap audit: eval samples whose image or question also occurs in the suite's train split.

An "OOD" number means little when the OOD split shares images with the train split (DC-SFT removes
Ref-L4's COCO images by hand for this reason). For each ID and OOD split of a suite this compares every
eval sample with every train sample by

- its images: an exact duplicate has identical decoded pixels (sha1 of the RGB bytes); a near duplicate
  has a DCT perceptual hash (:func:`phash`) within ``max_distance`` bits of a train image's AND an 8x8 RGB
  thumbnail (:func:`thumbnail`) within ``max_thumb_diff`` of it everywhere. Both survive JPEG re-encoding
  and resizing; the thumbnail rejects what the grayscale, low-frequency hash cannot tell apart (another
  shape or colour under the same lighting). docs/overlap.md has the measurement behind the defaults;
- its text: the question without answer-format instructions (``Task.stem``), normalised
  (:func:`normalize_text`); and both together: the same question on a near-duplicate image, the
  strongest leak.

Images are decoded one at a time and only their hashes (8 bytes), thumbnails (192 bytes) and pixel
digests are kept; matching is XOR + popcount of uint64 arrays over chunks of eval hashes against all
train hashes, then the thumbnails of the candidate pairs.
"""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from harness.errors import UsageError

#: Hamming distance (of the 63 informative bits) at or below which two images are near-duplicate candidates.
#: JPEG re-encodes (quality 30-90) and resizes (0.5x-2x) of synthetic images stayed within it for >= 99.8 %.
DEFAULT_MAX_DISTANCE = 10
#: Largest difference (0-255) of any value of two 8x8 RGB thumbnails for a hash candidate to be confirmed.
#: Re-encodes and resizes measured <= 15 (a 0.5x resize + JPEG q75: 99 %); different synthetic scenes that the
#: hash matched (distance 0-10) differ by 17 and more: the hash alone matches a filled circle to an outline
#: square under the same lighting.
DEFAULT_MAX_THUMB_DIFF = 16
THUMB_SIZE = 8
N_EXAMPLES = 5
#: eval hashes compared with all train hashes at once: chunk * n_train distances (uint64) stay near 32 MB
_PAIRS_PER_CHUNK = 4_000_000
#: candidate pairs whose thumbnails are compared at once (100k * 192 int16 = 38 MB)
_THUMB_PAIRS = 100_000
_NO_MATCH = 64  # larger than any distance of a 63-bit hash


# ----------------------------------------------------------------------------- hashes and text
def phash(image: Image.Image) -> int:
    """DCT perceptual hash: grayscale, 32x32, 2-D DCT, the 8x8 lowest frequencies above their median.

    The DC term (mean brightness) takes part neither in the median nor in the bits: the top bit is always 0,
    the other 63 bits say whether each AC coefficient is above the median of the 63.
    """
    from scipy.fft import dctn

    gray = image.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    coeffs = dctn(np.asarray(gray, dtype=np.float64), type=2, norm="ortho")[:8, :8].ravel()
    ac = coeffs[1:]
    bits = np.concatenate([[False], ac > np.median(ac)])
    return int(np.packbits(bits).view(">u8")[0])


def pixel_digest(image: Image.Image) -> str:
    """Identifies decoded pixels exactly (size included: equal bytes of another shape are another image)."""
    rgb = image.convert("RGB")
    return hashlib.sha1(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


_PUNCT = re.compile(r"[^\w\s]|_")
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFKC, lowercase, punctuation removed, whitespace collapsed: 'The  red, Circle!' == 'the red circle'."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def thumbnail(image: Image.Image) -> bytes:
    """8x8 RGB box-filtered thumbnail (192 bytes): colour and layout, which the grayscale pHash ignores."""
    return image.convert("RGB").resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX).tobytes()


@dataclass
class Matches:
    """Per eval image: its best confirmed train image (smallest hash distance, then thumbnail difference)."""

    dist: np.ndarray  # hash distance, _NO_MATCH when none is confirmed
    diff: np.ndarray  # thumbnail difference of that pair
    row: np.ndarray  # the train image's row, -1 when none
    candidate: np.ndarray  # bool: some train image within max_distance bits, before the thumbnail check

    @classmethod
    def empty(cls, n: int) -> Matches:
        return cls(np.full(n, _NO_MATCH, dtype=np.int64), np.zeros(n, dtype=np.int64), np.full(n, -1, dtype=np.int64),
                   np.zeros(n, dtype=bool))

    def update(self, a: np.ndarray, b: np.ndarray, dist: np.ndarray, diff: np.ndarray) -> None:
        """Keep, per eval image in ``a``, the best of these pairs and what it had."""
        if not len(a):
            return
        order = np.lexsort((diff, dist, a))
        a, b, dist, diff = a[order], b[order], dist[order], diff[order]
        first = np.unique(a, return_index=True)[1]
        a, b, dist, diff = a[first], b[first], dist[first], diff[first]
        better = (dist < self.dist[a]) | ((dist == self.dist[a]) & (diff < self.diff[a]))
        a, b, dist, diff = a[better], b[better], dist[better], diff[better]
        self.dist[a], self.diff[a], self.row[a] = dist, diff, b


def match(eval_hashes: np.ndarray, eval_thumbs: np.ndarray, train_hashes: np.ndarray, train_thumbs: np.ndarray,
          max_distance: int, max_thumb_diff: int, eval_keys: np.ndarray | None = None,
          train_keys: np.ndarray | None = None) -> tuple[Matches, Matches]:
    """Near duplicates of each eval image among the train images: hash distance <= max_distance (XOR + popcount,
    in chunks of eval hashes) and thumbnail difference <= max_thumb_diff.

    The second result keeps only pairs whose keys are equal (the same text); without keys it stays empty.
    """
    n = len(eval_hashes)
    any_, same = Matches.empty(n), Matches.empty(n)
    if n == 0 or len(train_hashes) == 0:
        return any_, same
    chunk = max(1, _PAIRS_PER_CHUNK // len(train_hashes))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        dist = np.bitwise_count(eval_hashes[start:stop, None] ^ train_hashes[None, :])
        a, b = np.nonzero(dist <= max_distance)
        a += start
        any_.candidate[a] = True
        for p in range(0, len(a), _THUMB_PAIRS):
            pa, pb = a[p:p + _THUMB_PAIRS], b[p:p + _THUMB_PAIRS]
            diff = np.abs(eval_thumbs[pa].astype(np.int16) - train_thumbs[pb]).max(axis=1)
            ok = diff <= max_thumb_diff
            pa, pb, pd, diff = pa[ok], pb[ok], dist[pa[ok] - start, pb[ok]].astype(np.int64), diff[ok]
            any_.update(pa, pb, pd, diff)
            if eval_keys is not None and train_keys is not None:
                k = eval_keys[pa] == train_keys[pb]
                same.update(pa[k], pb[k], pd[k], diff[k])
    return any_, same


# ----------------------------------------------------------------------------- one split's fingerprints
@dataclass
class SplitHashes:
    """What the audit keeps of a split: per sample its id and normalised text, per image its hashes."""

    task: str
    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    hashes: list[int] = field(default_factory=list)  # one per readable image
    thumbs: list[bytes] = field(default_factory=list)  # one per readable image
    digests: list[str] = field(default_factory=list)  # one per readable image
    owners: list[int] = field(default_factory=list)  # the sample index of each image
    unreadable: int = 0  # images that failed to decode (counted, skipped)

    @property
    def n(self) -> int:
        return len(self.ids)

    def hash_array(self) -> np.ndarray:
        return np.array(self.hashes, dtype=np.uint64)

    def thumb_array(self) -> np.ndarray:
        return np.frombuffer(b"".join(self.thumbs), dtype=np.uint8).reshape(len(self.thumbs), 3 * THUMB_SIZE**2)


def sample_text(task: Any, sample: Any) -> str:
    """The per-sample part of the prompt: the question without answer-format instructions, normalised."""
    from harness.conventions import ModelConventions

    return normalize_text(task.stem(sample, ModelConventions()))


def hash_split(task: Any, limit: int | None = None, progress: bool = True) -> SplitHashes:
    """Stream a split once, decoding one image at a time."""
    from tqdm import tqdm

    total = len(task) if limit is None else min(limit, len(task))
    out = SplitHashes(task.name)
    bar = tqdm(total=total, desc=f"hashing {task.name}", unit="sample", disable=not progress, leave=False)
    try:
        for i, sample in enumerate(task.samples()):
            if i >= total:
                break
            out.ids.append(str(sample.id))
            out.texts.append(sample_text(task, sample))
            for ref in sample.images:
                try:
                    image = ref.load()
                except (OSError, ValueError, SyntaxError):  # a damaged file: one sample's image, not the audit
                    out.unreadable += 1
                    continue
                out.hashes.append(phash(image))
                out.thumbs.append(thumbnail(image))
                out.digests.append(pixel_digest(image))
                out.owners.append(i)
            bar.update(1)
    finally:
        bar.close()
    return out


# ----------------------------------------------------------------------------- the report
@dataclass
class Overlap:
    """How many eval samples overlap the train split one way, with a few example pairs."""

    count: int | None  # None: not compared (a question fixed by the task)
    percent: float | None
    examples: list[dict[str, Any]] = field(default_factory=list)  # eval_id, train_id, distance, thumb_diff

    def cell(self) -> str:
        return "fixed question" if self.count is None else f"{self.count} ({self.percent:.1f} %)"


@dataclass
class SplitOverlap:
    task: str
    role: str  # id / ood
    n: int  # eval samples audited
    train_n: int  # train samples audited
    exact_images: Overlap  # identical decoded pixels
    near_images: Overlap  # hash and thumbnail close; includes the exact ones
    identical_text: Overlap  # identical normalised question
    text_and_image: Overlap  # identical question on a near-duplicate image
    text_fixed: bool  # every train and eval sample asks the same question: text is not compared
    hash_candidates: int = 0  # eval samples with a train image within max_distance bits, before the thumbnail check
    unreadable_images: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        near = self.near_images
        text = ("question fixed by the task (text not compared)" if self.text_fixed else
                f"{self.identical_text.count} identical texts ({self.text_and_image.count} on a near image)")
        line = (f"{self.task} ({self.role}): {near.count} of {self.n} images near a train image ({near.percent:.1f} %), "
                f"{self.exact_images.count} exact, {text}")
        return line + (f"; {self.unreadable_images} images unreadable" if self.unreadable_images else "")


@dataclass
class OverlapConfig:
    suite: str
    limit: int | None = None  # first N samples of each eval split
    train_limit: int | None = None  # first N train samples; None: the whole split (the honest audit)
    max_distance: int = DEFAULT_MAX_DISTANCE
    max_thumb_diff: int = DEFAULT_MAX_THUMB_DIFF
    progress: bool = True

    def check(self) -> None:
        for name, value in (("--limit", self.limit), ("--train_limit", self.train_limit)):
            if value is not None and value < 1:
                raise UsageError(f"{name} must be >= 1, got {value}")
        if not 0 <= self.max_distance <= 63:
            raise UsageError(f"--max_distance must be in 0..63 (bits of the hash), got {self.max_distance}")
        if not 0 <= self.max_thumb_diff <= 255:
            raise UsageError(f"--max_thumb_diff must be in 0..255 (a pixel value difference), got {self.max_thumb_diff}")


@dataclass
class OverlapReport:
    suite: str
    train: str
    train_total: int  # samples in the train split (train_n of each split is fewer under --train_limit)
    config: OverlapConfig
    splits: list[SplitOverlap]
    seconds: float

    HEADER = ("split", "role", "n", "train n", "exact image", "near image", "same text", "text+near image")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return "\n".join(s.summary() for s in self.splits)

    def rows(self) -> list[tuple[str, ...]]:
        return [(s.task, s.role, str(s.n), str(s.train_n), s.exact_images.cell(), s.near_images.cell(),
                 s.identical_text.cell(), s.text_and_image.cell()) for s in self.splits]


def _per_sample(n: int, owners: list[int], m: Matches, train_owners: list[int]) -> tuple[np.ndarray, ...]:
    """Per eval sample (its closest image when it has several): hash distance, thumbnail difference,
    train sample index (-1: none)."""
    dist = np.full(n, _NO_MATCH, dtype=np.int64)
    diff = np.zeros(n, dtype=np.int64)
    where = np.full(n, -1, dtype=np.int64)
    for owner, d, f, row in zip(owners, m.dist.tolist(), m.diff.tolist(), m.row.tolist()):
        if row >= 0 and (where[owner] < 0 or (d, f) < (dist[owner], diff[owner])):
            dist[owner], diff[owner], where[owner] = d, f, train_owners[row]
    return dist, diff, where


def _example(eval_id: str, train_id: str, dist: int | None, diff: float | None) -> dict[str, Any]:
    return {"eval_id": eval_id, "train_id": train_id, "distance": None if dist is None else int(dist),
            "thumb_diff": None if diff is None else int(diff)}


def _overlap(hit: np.ndarray, n: int, examples: list[dict[str, Any]]) -> Overlap:
    count = int(hit.sum())
    return Overlap(count, round(100.0 * count / n, 2) if n else 0.0, examples[:N_EXAMPLES])


def compare(ev: SplitHashes, train: SplitHashes, role: str, max_distance: int = DEFAULT_MAX_DISTANCE,
            max_thumb_diff: int = DEFAULT_MAX_THUMB_DIFF) -> SplitOverlap:
    """The overlap of one (hashed) eval split with the (hashed) train split."""
    n, ids, tids = ev.n, ev.ids, train.ids
    # texts as integer keys: equal key = identical normalised text; an eval text absent from train gets -1
    vocab: dict[str, int] = {}
    train_keys = np.array([vocab.setdefault(t, len(vocab)) for t in train.texts], dtype=np.int64)
    eval_keys = np.array([vocab.get(t, -1) for t in ev.texts], dtype=np.int64)
    text_fixed = len(set(train.texts) | set(ev.texts)) == 1 and train.n + n > 2

    near_m, same_m = match(ev.hash_array(), ev.thumb_array(), train.hash_array(), train.thumb_array(), max_distance,
                           max_thumb_diff, eval_keys[np.array(ev.owners, dtype=np.int64)],
                           train_keys[np.array(train.owners, dtype=np.int64)])
    near_d, near_f, near_j = _per_sample(n, ev.owners, near_m, train.owners)
    same_d, same_f, same_j = _per_sample(n, ev.owners, same_m, train.owners)
    candidates = np.zeros(n, dtype=bool)
    candidates[np.array(ev.owners, dtype=np.int64)[near_m.candidate]] = True

    first_with_digest: dict[str, int] = {}
    for digest, owner in zip(train.digests, train.owners):
        first_with_digest.setdefault(digest, owner)
    exact_j = np.full(n, -1, dtype=np.int64)
    for digest, owner in zip(ev.digests, ev.owners):
        if exact_j[owner] < 0 and digest in first_with_digest:
            exact_j[owner] = first_with_digest[digest]
    exact = exact_j >= 0

    near = near_j >= 0
    closest = sorted(np.flatnonzero(near).tolist(), key=lambda i: (near_d[i], near_f[i], i))
    result = SplitOverlap(
        task=ev.task, role=role, n=n, train_n=train.n,
        exact_images=_overlap(exact, n, [_example(ids[i], tids[exact_j[i]], 0, 0.0) for i in np.flatnonzero(exact)]),
        near_images=_overlap(near, n, [_example(ids[i], tids[near_j[i]], near_d[i], near_f[i]) for i in closest]),
        identical_text=Overlap(None, None), text_and_image=Overlap(None, None), text_fixed=text_fixed,
        hash_candidates=int(candidates.sum()), unreadable_images=ev.unreadable)
    if text_fixed:
        return result

    first_with_text: dict[int, int] = {}
    for i, key in enumerate(train_keys.tolist()):
        first_with_text.setdefault(key, i)
    same_text = eval_keys >= 0
    examples = []
    for i in np.flatnonzero(same_text)[:N_EXAMPLES]:
        if same_j[i] >= 0:  # the near image asking the same question is the telling pair
            examples.append(_example(ids[i], tids[same_j[i]], same_d[i], same_f[i]))
        else:
            examples.append(_example(ids[i], tids[first_with_text[int(eval_keys[i])]], None, None))
    result.identical_text = _overlap(same_text, n, examples)
    both = same_j >= 0
    closest = sorted(np.flatnonzero(both).tolist(), key=lambda i: (same_d[i], same_f[i], i))
    result.text_and_image = _overlap(both, n, [_example(ids[i], tids[same_j[i]], same_d[i], same_f[i])
                                               for i in closest])
    return result


# ----------------------------------------------------------------------------- the audit
def check_suite(suite_name: str) -> tuple[Any, dict[str, Any]]:
    """The suite and its tasks, or one-line errors (unknown suite, no train split, a missing dataset's
    DatasetMissing message), all before any image is decoded."""
    from harness.registry import SUITES
    from harness.taskspec import make_task

    suite = SUITES.get(suite_name)
    if not suite.train:
        raise UsageError(f"suite {suite_name!r} has no train split: there is nothing to audit its ID and OOD "
                         "splits against")
    if not suite.eval_tasks:
        raise UsageError(f"suite {suite_name!r} has no ID or OOD split to audit")
    tasks = {name: make_task(name) for name in (suite.train, *suite.eval_tasks)}
    for task in tasks.values():
        len(task)  # a dataset task reads its annotations here: DatasetMissing says what is missing
    return suite, tasks


def audit_suite(suite_name: str, limit: int | None = None, train_limit: int | None = None,
                max_distance: int = DEFAULT_MAX_DISTANCE, progress: bool = True,
                max_thumb_diff: int = DEFAULT_MAX_THUMB_DIFF) -> OverlapReport:
    """Compare the suite's train split with each of its ID and OOD splits, by images and by text."""
    cfg = OverlapConfig(suite_name, limit, train_limit, max_distance, max_thumb_diff, progress)
    cfg.check()
    suite, tasks = check_suite(suite_name)
    start = time.perf_counter()
    train = hash_split(tasks[suite.train], train_limit, progress)
    splits = []
    for name in suite.eval_tasks:
        t0 = time.perf_counter()
        result = compare(hash_split(tasks[name], limit, progress), train, suite.role_of(name) or "",
                         max_distance, max_thumb_diff)
        result.seconds = round(time.perf_counter() - t0, 2)
        splits.append(result)
    return OverlapReport(suite=suite_name, train=suite.train, train_total=len(tasks[suite.train]), config=cfg,
                         splits=splits, seconds=round(time.perf_counter() - start, 2))
