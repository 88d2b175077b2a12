"""PNG plots of training metrics (matplotlib, no display needed)."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["plot_metrics"]

PANELS = [
    ("retry success", ["rrr/retry_success", "reward"]),
    ("reflection length (chars)", ["rrr/reflection_chars"]),
    ("reflection holds an answer", ["rrr/reflection_holds_answer"]),
    ("zero-variance groups", ["frac_reward_zero_std"]),
    ("KL to reference", ["kl"]),
    ("grad norm", ["grad_norm"]),
]


def plot_metrics(metrics_jsonl: Path, out: Path) -> Path | None:
    """Plot what metrics.jsonl holds; returns the PNG path, or None when there is nothing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return None
    rows = []
    if metrics_jsonl.exists():
        for line in metrics_jsonl.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    if not rows:
        return None
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for ax, (title, keys) in zip(axes.flat, PANELS, strict=True):
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if key in r]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", markersize=3, label=key)
                break
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle("rrr training")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
