"""What every figure of the report shares: matplotlib (the `report` extra) and one colour per backbone."""

from __future__ import annotations

import math

from ..errors import MissingExtraError, install_hint

# At most this many panels to a row of a per-dataset figure: the paper's nine datasets are three rows of three.
PANELS_PER_ROW = 3

# One colour per backbone in every figure (matplotlib's tab10), so a reader learns them once.
BACKBONE_COLORS = {
    "mingru": "tab:blue",
    "minlstm": "tab:orange",
    "transformer": "tab:green",
    "gru": "tab:red",
    "lstm": "tab:purple",
}


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MissingExtraError(f"report's plots need matplotlib: {install_hint('report')}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def color(backbone):
    return BACKBONE_COLORS.get(backbone, "tab:gray")


def panels(plt, n: int, height: float):
    """A figure of n per-dataset panels, at most PANELS_PER_ROW to a row, and never narrower than its title
    (one panel alone would clip it): (figure, the n axes in reading order). Spare cells of the last row are
    hidden."""
    cols = min(n, PANELS_PER_ROW)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.5 * cols, 6.5), height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])
