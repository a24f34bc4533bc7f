"""The markdown of ``results.md`` (one table per benchmark, findings) and of ``study.md``.

Every function is pure: reports in, markdown text out.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence

import jax
import numpy as np

from autoscale_jax.bench.experiments.results import BenchmarkReport, StudyResult
from autoscale_jax.bench.experiments.summary import MethodSummary

__all__ = [
    "RESTART_TOLERANCE",
    "findings",
    "markdown_table",
    "recipe_lines",
    "results_markdown",
    "study_markdown",
]


def _cell(mean: float, sd: float, seeds: int) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.4g}" if seeds < 2 else f"{mean:.4g} ± {sd:.2g}"


def _delta_cell(summary: MethodSummary, convention: str) -> str:
    mean, sd = summary.delta_m_mean[convention], summary.delta_m_sd[convention]
    if not math.isfinite(mean):
        return "n/a"
    mean = 0.0 if abs(mean) < 5e-3 else mean  # no "-0.00"
    return f"{mean:+.2f}" if summary.num_seeds < 2 else f"{mean:+.2f} ± {sd:.2f}"


def _ratio_cell(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "n/a"


def _weights_cell(summary: MethodSummary, report: BenchmarkReport) -> str:
    if summary.method == "ls_grid" and report.grid:
        weights = report.grid["weights"][report.grid["best_index"]]
    else:
        weights = summary.weights
    if not weights or len(weights) > 4:
        return "—"
    return _format_weights(weights)


def _format_weights(weights: Sequence[float]) -> str:
    return "(" + ", ".join(f"{w:.3g}" for w in weights) + ")"


def markdown_table(report: BenchmarkReport) -> str:
    """One row per method: test metrics, Δm% (both conventions), MR, cost vs EW, weights.

    Args:
      report: a benchmark's report.

    Returns:
      A markdown table.
    """
    metric_columns = [
        (k, metric, f"{name} {metric} {'↑' if higher else '↓'}")
        for k, (name, metrics, better) in enumerate(report.tasks)
        for metric, higher in zip(metrics, better, strict=True)
    ]
    header = [
        "method",
        *(title for _, _, title in metric_columns),
        "Δm% per-metric ↑",
        "Δm% per-task ↑",
        "MR ↓",
        "time ×EW",
        "grad evals ×EW",
        "final weights",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in report.summaries:
        cells = [
            s.method,
            *(
                _cell(s.test_mean[k][metric], s.test_sd[k][metric], s.num_seeds)
                for k, metric, _ in metric_columns
            ),
            _delta_cell(s, "per_metric"),
            _delta_cell(s, "per_task"),
            _ratio_cell(s.mean_rank),
            _ratio_cell(s.time_vs_ew),
            _ratio_cell(s.gradient_evaluations_vs_ew),
            _weights_cell(s, report),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# Δm differences below this print as +0.00 / -0.00: a tie, whatever the seed noise.
_TIE = 5e-3
# A fair recipe: one optimizer reset after 5% of training moves the grid's run by at most this.
RESTART_TOLERANCE = 1.0


def _compare(a: MethodSummary, b: MethodSummary) -> tuple[float, str]:
    """Δm difference a - b and a verdict: "tie" when it rounds to 0.00 or lies within the seed
    noise (|diff| <= sd_a + sd_b), "better/worse beyond seed noise" past it, and "(one seed: no
    noise estimate)" when there is no noise to compare with."""
    diff = a.delta_m_mean["per_metric"] - b.delta_m_mean["per_metric"]
    noise = a.delta_m_sd["per_metric"] + b.delta_m_sd["per_metric"]
    if not math.isfinite(diff):
        return diff, "not comparable"
    if abs(diff) < _TIE:
        return 0.0, "tie"
    direction = "better" if diff > 0 else "worse"
    if min(a.num_seeds, b.num_seeds) < 2 or not math.isfinite(noise):
        return diff, f"{direction} (one seed: no noise estimate)"
    if abs(diff) <= noise:
        return diff, "tie within seed noise"
    return diff, f"{direction} beyond seed noise"


def _versus(a: MethodSummary, b: MethodSummary) -> str:
    """``b``'s Δm and the labelled difference, e.g. ``ls_grid -10.51, difference -11.80: worse
    beyond seed noise``."""
    diff, verdict = _compare(a, b)
    return f"{b.method} {b.delta_m_mean['per_metric']:+.2f}, difference {diff:+.2f}: {verdict}"


def findings(report: BenchmarkReport) -> list[str]:
    """Plain statements read off the table: EW vs grid LS, AutoScale vs both, the best method.

    Every comparison gives both Δm% values and their labelled difference, e.g.
    ``autoscale_gms: Δm -22.31 (ls_grid -10.51, difference -11.80: worse beyond seed noise)``.
    "Beyond seed noise" means the Δm% (per-metric) difference exceeds the sum of the two seed
    standard deviations; within it, or when it rounds to 0.00, the two are a tie.

    Args:
      report: a benchmark's report.

    Returns:
      One sentence per finding.
    """
    rows = {s.method: s for s in report.summaries}
    lines: list[str] = []
    ew, grid = rows.get("ew"), rows.get("ls_grid")
    if ew and grid:
        lines.append(
            f"EW vs grid-searched LS: EW Δm {ew.delta_m_mean['per_metric']:+.2f} "
            f"({_versus(ew, grid)}); the grid cost {grid.time_vs_ew:.1f}x one EW run."
        )
    multitask = [
        s
        for s in report.summaries
        if s.method != "single_task" and math.isfinite(s.delta_m_mean["per_metric"])
    ]
    for label in sorted(m for m in rows if m.startswith("autoscale")):
        s = rows[label]
        others = "; ".join(_versus(s, other) for other in (grid, ew) if other is not None)
        parts = [
            f"{label}: Δm {s.delta_m_mean['per_metric']:+.2f}" + (f" ({others})" if others else "")
        ]
        parts.append(
            f"at {s.time_vs_ew:.2f}x EW wall time and {s.gradient_evaluations_vs_ew:.2f}x EW "
            "gradient evaluations"
        )
        ahead = [o.method for o in multitask if _compare(o, s)[1] == "better beyond seed noise"]
        if ahead:
            parts.append(f"loses beyond seed noise to {', '.join(ahead)}")
        lines.append(", ".join(parts) + ".")
    if multitask:
        best = max(multitask, key=lambda s: s.delta_m_mean["per_metric"])
        lines.append(f"Best Δm%: {best.method} ({best.delta_m_mean['per_metric']:+.2f}).")
    restart = rows.get("ls_grid_restart")
    if grid and restart:
        diff = abs(_compare(restart, grid)[0])
        check = (
            f"|difference| ≤ {RESTART_TOLERANCE:g}: the recipe passes the restart check"
            if diff <= RESTART_TOLERANCE
            else f"the reset still moves the grid's run by {diff:.2f} points (> "
            f"{RESTART_TOLERANCE:g}): the recipe fails the restart check"
        )
        lines.append(
            f"Restart control: ls_grid_restart Δm {restart.delta_m_mean['per_metric']:+.2f} "
            f"({_versus(restart, grid)}); {check}."
        )
    for label, error in report.failures.items():
        lines.append(f"{label} failed and is not in the table: {error}")
    return lines


def _heads_sentence(heads: str | None) -> str:
    """Which head-gradient semantics the Gramian methods ran with (when the CLI recorded it)."""
    if heads == "plain":
        return (
            ' Gramian methods: `heads="plain"` (only shared leaves weighted; each task head its '
            "own gradient)."
        )
    if heads == "weighted":
        return ' Gramian methods: `heads="weighted"` (every leaf weighted).'
    return ""


def _grid_words(report: BenchmarkReport) -> str:
    size = report.budget["grid_size"]
    if len(report.tasks) == 2 or not size:
        return f"LS grid of {size} fixed weights"
    return f"LS random search of {size} fixed weightings (EW + log-uniform draws)"


def recipe_lines(report: BenchmarkReport) -> list[str]:
    """The recipe every row trained with, and how many runs selected a checkpoint before
    their last step (the recipe should leave most of them there).

    Args:
      report: a benchmark's report.

    Returns:
      Markdown lines (none for a report without a recipe).
    """
    lines = []
    if report.recipe:
        lines.append(f"Recipe (every row): {report.recipe['description']}.")
    selection = report.selection
    if selection and selection.get("runs"):
        lines.append(
            f"Selected checkpoint before the last step: {selection['before_end']} of "
            f"{selection['runs']} runs ({selection['share']:.0%})."
        )
    return lines


def _benchmark_section(report: BenchmarkReport, images: Sequence[str]) -> str:
    budget = report.budget
    text = [
        f"## {report.benchmark}",
        "",
        f"*{report.note}.*",
        "",
        f"Budget: {budget['steps']} steps × batch {budget['batch_size']}, seeds "
        f"{budget['seeds']}, validation every {budget['eval_every']} steps, "
        f"{_grid_words(report)}. Test metrics at the validation-selected step "
        "(mean ± sd over seeds)." + _heads_sentence(budget.get("heads")),
        "",
        *(f"{line}\n" for line in recipe_lines(report)),
        *([f"**Timing caveat:** {report.timing_caveat}", ""] if report.timing_caveat else []),
        markdown_table(report),
        "",
        *(f"- {line}" for line in findings(report)),
        "",
        *(f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in images),
        "",
    ]
    return "\n".join(text)


def results_markdown(
    reports: Sequence[BenchmarkReport],
    images: dict[str, list[str]],
    *,
    suite: str,
    wall_time_s: float,
    skipped: dict[str, str],
) -> str:
    """The whole ``results.md``: a header with the conventions, then one section per benchmark.

    Args:
      reports: one per benchmark run.
      images: ``{benchmark: [PNG paths]}`` linked under its section.
      suite: the suite's name.
      wall_time_s: the suite's total wall time.
      skipped: ``{benchmark: reason}`` for benchmarks that could not run.

    Returns:
      The markdown text.
    """
    header = [
        f"# autoscale-jax benchmark: {suite} suite",
        "",
        f"Measured on {platform.node() or 'this machine'} ({platform.machine()}, "
        f"{os.cpu_count()} CPU cores, jax {jax.__version__} on {jax.default_backend()}); "
        f"total wall time {wall_time_s / 60:.1f} min.",
        "",
        "- **Δm%** against single-task baselines, **positive = better**: per-metric = mean over "
        "all metrics of the signed relative difference (Maninis et al. 2019); per-task = mean "
        "within each task first, then over tasks (2505.10347). They coincide when every task "
        "has one metric.",
        "- **MR**: mean rank over all test metrics among the multi-task rows (lower = better).",
        "- **time ×EW**: training wall time (compilation and evaluation excluded) relative to "
        "one EW run; **grad evals ×EW**: forward+backward passes relative to EW (K per step "
        "while a method needs per-task gradients, 1 on the fast path). The grid search counts "
        "all its runs. Other processes on the machine make wall times noisy.",
        "- **ls_grid**: the fixed weights with the best mean validation Δm% among the grid (a "
        "random search for K > 2, equal weights included); **ls_grid_restart**: the same "
        "weights with Adam reset once after 5% of training (the restart control: a fair recipe "
        "moves Δm by at most 1 point); **ls_grid_on_search**: the same weights on the search's "
        "schedule (gms phase 1, then a fresh Adam state); **single_task**: each task trained "
        "alone (its cost is K runs).",
        "- **Recipe**: every row of a benchmark trains with the same optimizer, schedule, steps "
        "and batch (printed under each benchmark).",
        "",
    ]
    body = [_benchmark_section(r, images.get(r.benchmark, [])) for r in reports]
    tail = [f"- {name} skipped: {reason}" for name, reason in skipped.items()]
    return "\n".join(header + body + (["## Skipped", "", *tail, ""] if tail else []))


_EXPECTED_SIGN = {
    "gradient_magnitude_similarity": (+1, "good weights show high GMS"),
    "condition_number": (-1, "good weights show a low condition number"),
    "loss_scale_entropy": (+1, "good weights balance the loss scales"),
    "mean_cosine_similarity": (
        0,
        "cosine ignores task weights at a given point (differences come from the training "
        "paths): expected weak",
    ),
}


def study_markdown(study: StudyResult) -> str:
    """Per-run table (weights, early metrics, final Δm%) and the Spearman correlations.

    Args:
      study: the weight study.

    Returns:
      The markdown text of ``study.md``.
    """
    names = list(study.early_metrics)
    lines = [
        f"# Weight study: {study.benchmark}",
        "",
        f"{len(study.weights)} fixed LS weightings trained for {study.steps} steps each; MTO "
        f"metrics of the shared trunk at each run's weights averaged over steps 0..."
        f"{study.early_steps}; final test Δm% (per-metric, positive = better).",
        "",
        "| weights | " + " | ".join(names) + " | final Δm% |",
        "|" + "---|" * (len(names) + 2),
    ]
    for i, weights in enumerate(study.weights):
        values = " | ".join(f"{study.early_metrics[n][i]:.4g}" for n in names)
        lines.append(f"| {_format_weights(weights)} | {values} | {study.delta_m[i]:+.2f} |")
    lines += ["", "| metric | Spearman ρ with final Δm% | reading |", "|---|---|---|"]
    for name in names:
        rho = study.spearman[name]
        sign, claim = _EXPECTED_SIGN.get(name, (0, ""))
        if sign == 0 or not math.isfinite(rho):
            verdict = claim
        elif rho * sign > 0.5:
            verdict = f"supports: {claim}"
        elif rho * sign > 0:
            verdict = f"weakly supports: {claim}"
        else:
            verdict = f"contradicts: {claim}"
        lines.append(f"| {name} | {rho:+.3f} | {verdict} |")
    return "\n".join([*lines, "", *_study_peaks(study)]) + "\n"


def _study_peaks(study: StudyResult) -> list[str]:
    """Where Δm% peaks vs where each guide's metric peaks: a rank correlation can be high
    while the metric's optimum still misses the best weights."""
    best = int(np.argmax(study.delta_m))
    lines = [
        f"- Best final Δm%: {study.delta_m[best]:+.2f} at weights "
        f"{_format_weights(study.weights[best])}."
    ]
    for name, pick in (
        ("gradient_magnitude_similarity", np.argmax),
        ("condition_number", np.argmin),
        ("loss_scale_entropy", np.argmax),
    ):
        chosen = int(pick(study.early_metrics[name]))
        lines.append(
            f"- Weights optimising early {name}: {_format_weights(study.weights[chosen])} "
            f"(final Δm% {study.delta_m[chosen]:+.2f}, "
            f"{study.delta_m[chosen] - study.delta_m[best]:+.2f} from the best)."
        )
    return lines
