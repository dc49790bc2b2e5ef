"""Published D4RL v2 normalized scores: Table 3 of "Were RNNs All We Needed?" (Feng et al. 2024), 5 seeds.
Columns: DT (Chen et al. 2021), DMamba (Ota 2024), minLSTM, minGRU (mean, std)."""

PUBLISHED = {
    "halfcheetah-medium": {"DT": 42.6, "DMamba": 42.8, "minLSTM": (42.7, 0.7), "minGRU": (43.0, 0.4)},
    "hopper-medium": {"DT": 68.4, "DMamba": 83.5, "minLSTM": (85.0, 4.4), "minGRU": (79.4, 8.2)},
    "walker2d-medium": {"DT": 75.5, "DMamba": 78.2, "minLSTM": (72.0, 7.5), "minGRU": (73.3, 3.3)},
    "halfcheetah-medium-replay": {"DT": 37.0, "DMamba": 39.6, "minLSTM": (38.6, 1.1), "minGRU": (38.5, 1.1)},
    "hopper-medium-replay": {"DT": 85.6, "DMamba": 82.6, "minLSTM": (88.5, 4.7), "minGRU": (90.5, 0.9)},
    "walker2d-medium-replay": {"DT": 71.2, "DMamba": 70.9, "minLSTM": (69.7, 10.7), "minGRU": (72.8, 8.9)},
    "halfcheetah-medium-expert": {"DT": 88.8, "DMamba": 91.9, "minLSTM": (85.4, 1.7), "minGRU": (86.3, 0.5)},
    "hopper-medium-expert": {"DT": 109.6, "DMamba": 111.1, "minLSTM": (110.3, 1.6), "minGRU": (109.7, 2.7)},
    "walker2d-medium-expert": {"DT": 109.3, "DMamba": 108.3, "minLSTM": (110.3, 0.5), "minGRU": (110.3, 0.4)},
}
PUBLISHED_COLUMNS = ("DT", "DMamba", "minGRU", "minLSTM")
# How each column's number was taken from its runs (last checkpoint, best, or max over training evaluations),
# as far as a source says; "not stated" where none does. Ours are always the last checkpoint's.
PUBLISHED_PROTOCOL = {
    "DT": "not stated by Feng et al. (DT's own paper reports the last evaluation)",
    "DMamba": "max over training evaluations (toshihiro-ota/decision-mamba issue 2)",
    "minGRU": "not stated by Feng et al.",
    "minLSTM": "not stated by Feng et al.",
}


def published_cell(dataset: str, column: str) -> str:
    value = PUBLISHED.get(dataset, {}).get(column)
    if value is None:
        return "-"
    return f"{value[0]:.1f} ± {value[1]:.1f}" if isinstance(value, tuple) else f"{value:.1f}"
