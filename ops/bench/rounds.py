"""Running a scenario's setups side by side, round after round, and summarizing the rounds.

Every comparison in the benchmarks is a ratio measured in the same round: round ``r`` runs
setup A, then B, then C, each with freshly started workers, before round ``r + 1`` starts. A
burst of load from something else on the machine therefore hits neighbouring measurements
alike, and the median of the per-round ratios is far steadier than a ratio of medians taken
minutes apart.

Example::

    result = run_scenario(spec, setups, rounds=3, measure=measure_one, tiny=False)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ops.bench.harness import summarize


@dataclass(frozen=True)
class Metric:
    """One column of a scenario's table."""

    key: str
    label: str
    digits: int = 0


@dataclass(frozen=True)
class Setup:
    """One side of a comparison: a label for the table and whatever the scenario needs."""

    key: str
    label: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScenarioSpec:
    """What a scenario reports: its table's columns, the ratio it is about, notes."""

    name: str
    title: str
    question: str
    metrics: list[Metric]
    # The ratio column: ``ratio_metric`` of each setup divided by that of ``reference`` in the
    # same round (inverted when ``lower_is_better``, so "×2" always means "twice as good").
    reference: str
    ratio_metric: str
    lower_is_better: bool = False
    size: str = ""
    notes: list[str] = field(default_factory=list)
    chart: dict[str, Any] = field(default_factory=dict)


def smoke_subset(setups: Sequence[Setup], reference: str) -> list[Setup]:
    """For ``--tiny`` runs: the reference and jobq's first setup, so a smoke run stays short."""
    ref = [setup for setup in setups if setup.key == reference]
    ours = [setup for setup in setups if setup.key != reference and setup.key.startswith("jobq")]
    return ref + ours[:1] if ours else list(setups)


def run_rounds(
    setups: Sequence[Setup],
    rounds: int,
    measure: Callable[[Setup, int], dict[str, float]],
    *,
    log: Callable[[str], None] = print,
) -> dict[str, list[dict[str, float]]]:
    """``measure(setup, round)`` for every setup in every round, interleaved."""
    samples: dict[str, list[dict[str, float]]] = {setup.key: [] for setup in setups}
    for round_index in range(rounds):
        for setup in setups:
            started = time.monotonic()
            values = measure(setup, round_index)
            samples[setup.key].append(values)
            shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
            log(
                f"  round {round_index + 1}/{rounds} {setup.label}: {shown} "
                f"({time.monotonic() - started:.0f}s)"
            )
    return samples


def summarize_scenario(
    spec: ScenarioSpec, setups: Sequence[Setup], samples: dict[str, list[dict[str, float]]]
) -> dict[str, Any]:
    """The JSON a scenario hands to the report: medians, min–max, per-round ratios."""
    reference = samples[spec.reference]
    rows = []
    for setup in setups:
        runs = samples[setup.key]
        stats = {
            m.key: summarize([run.get(m.key, float("nan")) for run in runs]) for m in spec.metrics
        }
        ratios = []
        for run, ref in zip(runs, reference, strict=False):
            mine, theirs = run.get(spec.ratio_metric), ref.get(spec.ratio_metric)
            if mine and theirs:
                ratios.append(theirs / mine if spec.lower_is_better else mine / theirs)
        rows.append(
            {
                "setup": setup.key,
                "label": setup.label,
                "stats": stats,
                "ratio": summarize(ratios),
                "runs": runs,
            }
        )
    return {**asdict(spec), "rows": rows, "rounds": len(reference)}


def run_scenario(
    spec: ScenarioSpec,
    setups: Sequence[Setup],
    rounds: int,
    measure: Callable[[Setup, int], dict[str, float]],
    *,
    tiny: bool,
) -> dict[str, Any]:
    """Run ``setups`` (their smoke subset when ``tiny``) round by round and summarize them."""
    chosen = smoke_subset(setups, spec.reference) if tiny else list(setups)
    return summarize_scenario(spec, chosen, run_rounds(chosen, rounds, measure))
