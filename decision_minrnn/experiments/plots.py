"""What every figure of the report shares: matplotlib (the `report` extra) and one colour per backbone."""

from __future__ import annotations

from ..errors import MissingExtraError

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
        raise MissingExtraError("report's plots need matplotlib: pip install 'decision-minrnn[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def color(backbone):
    return BACKBONE_COLORS.get(backbone, "tab:gray")
