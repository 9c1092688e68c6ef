"""PNG plots of a training run (matplotlib, Agg backend): training curves and eval metrics against step.

Both take plain rows (lists of dicts), so an orchestrator can call them on
``train_log.jsonl`` (``trainers.train_log.read_log``) and on the eval scores it
collects per checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Sequence


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    return plt


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and "step" in r:
            xs.append(float(r["step"]))
            ys.append(float(v))
    return xs, ys


def reward_components(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Names of the reward components in a GRPO log (``rewards/<name>/mean``)."""
    names = []
    for r in rows:
        for k in r:
            if k.startswith("rewards/") and k.endswith("/mean"):
                name = k[len("rewards/"): -len("/mean")]
                if name not in names:
                    names.append(name)
    return names


def _mark_stages(ax: Any, stages: Sequence[tuple[float, str]]) -> None:
    """Curriculum stages: a dotted line where each starts, labelled at the top."""
    for start, label in stages:
        ax.axvline(start, color="tab:purple", linestyle=":", linewidth=1)
        ax.text(start, 1.0, f" {label}", transform=ax.get_xaxis_transform(), fontsize=7, color="tab:purple",
                va="top", ha="left")


def plot_training(rows: Sequence[dict[str, Any]], out_dir: str | Path, title: str = "",
                  stages: Sequence[tuple[float, str]] = ()) -> list[Path]:
    """``loss.png`` (loss, and grad norm on a second axis) and, for RL logs, ``reward.png``
    (each component's mean with a +-std band, and the weighted total) and ``rl_stats.png``
    (KL, completion length, fraction of zero-std groups). Returns the files written.
    ``stages``: (first step, label) of curriculum stages, marked on every plot."""
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    prefix = f"{title}: " if title else ""

    xs, ys = _series(rows, "loss")
    if xs:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(xs, ys, color="tab:blue", label="loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        gx, gy = _series(rows, "grad_norm")
        if gx:
            ax2 = ax.twinx()
            ax2.plot(gx, gy, color="tab:grey", alpha=0.6, linewidth=0.8, label="grad norm")
            ax2.set_ylabel("grad norm")
        _mark_stages(ax, stages)
        ax.set_title(f"{prefix}training loss")
        fig.tight_layout()
        written.append(_save(fig, out / "loss.png", plt))

    components = reward_components(rows)
    if components:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for name in components:
            mx, my = _series(rows, f"rewards/{name}/mean")
            sx, sy = _series(rows, f"rewards/{name}/std")
            line = ax.plot(mx, my, label=name)[0]
            if sx == mx:
                ax.fill_between(mx, [m - s for m, s in zip(my, sy)], [m + s for m, s in zip(my, sy)],
                                color=line.get_color(), alpha=0.15, linewidth=0)
        tx, ty = _series(rows, "reward")
        if tx and len(components) > 1:
            ax.plot(tx, ty, color="black", linewidth=1.2, label="weighted total")
        ax.set_xlabel("step")
        ax.set_ylabel("reward (mean, band: +-std)")
        _mark_stages(ax, stages)
        ax.set_title(f"{prefix}reward")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, out / "reward.png", plt))

    stats = [k for k in ("kl", "completions/mean_length", "frac_reward_zero_std") if _series(rows, k)[0]]
    if stats:
        fig, axes = plt.subplots(1, len(stats), figsize=(3.2 * len(stats), 3), squeeze=False)
        for ax, key in zip(axes[0], stats):
            ax.plot(*_series(rows, key))
            _mark_stages(ax, stages)
            ax.set_title(key, fontsize=9)
            ax.set_xlabel("step")
        fig.suptitle(f"{prefix}RL statistics", fontsize=10)
        fig.tight_layout()
        written.append(_save(fig, out / "rl_stats.png", plt))
    return written


def plot_eval_curves(rows: Iterable[dict[str, Any]], out_path: str | Path, title: str = "",
                     metric_label: str = "score") -> Path:
    """Eval metric against training step, one line per split, ID solid and OOD dashed.

    Each row: ``step``, ``split`` (task name), ``role`` ("id"/"ood"), ``value``, and
    optionally ``ci_low``/``ci_high`` (drawn as a band). Step 0 is the base model.
    """
    plt = _pyplot()
    by_split: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_split.setdefault(str(r["split"]), []).append(r)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for split, items in sorted(by_split.items(), key=lambda kv: (kv[1][0].get("role") != "id", kv[0])):
        items = sorted(items, key=lambda r: r["step"])
        xs = [r["step"] for r in items]
        ys = [r["value"] for r in items]
        role = items[0].get("role", "")
        line = ax.plot(xs, ys, marker="o", markersize=3, linestyle="-" if role == "id" else "--",
                       label=f"{split} ({role})" if role else split)[0]
        if all("ci_low" in r and "ci_high" in r for r in items):
            ax.fill_between(xs, [r["ci_low"] for r in items], [r["ci_high"] for r in items],
                            color=line.get_color(), alpha=0.12, linewidth=0)
    ax.set_xlabel("training step")
    ax.set_ylabel(metric_label)
    ax.set_title(title or "ID and OOD metrics by checkpoint")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(out_path), plt)


def _save(fig: Any, path: Path, plt: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)  # a reader never sees half a PNG
    return path
