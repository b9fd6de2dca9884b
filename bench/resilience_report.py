"""What the resilience run prints and draws: a table per fault, a summary, a PNG per fault."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.resilience_audit import AuditCount
from bench.resilience_load import NO_ANSWER, TIMEOUT, Kind, Sample, status_label


@dataclass
class PhaseResult:
    name: str
    title: str
    auth_mode: str
    kinds: list[Kind]
    samples: list[Sample]
    fault_start: float  # seconds since the load started
    fault_end: float
    end: float  # when the last client thread stopped
    audit: AuditCount
    plot: Path | None = None

    def of_kind(self, name: str) -> list[Sample]:
        return [sample for sample in self.samples if sample.kind == name]

    def recovery(self, name: str) -> float | None:
        """Seconds from the end of the fault to the first 2xx of this kind that came after it."""
        ends = [s.end for s in self.of_kind(name) if s.ok and s.end >= self.fault_end]
        return min(ends) - self.fault_end if ends else None

    def recovered_in(self) -> float | None:
        """The slowest recovery of the kinds with a valid credential (None: one never did)."""
        times = [self.recovery(kind.name) for kind in self.kinds if kind.valid]
        if not times or any(time is None for time in times):
            return None
        return max(time for time in times if time is not None)

    def period(self, sample: Sample) -> str:
        if sample.start < self.fault_start:
            return "before"
        return "during" if sample.start < self.fault_end else "after"


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _status_order(status: int) -> tuple[int, int]:
    return (1, -status) if status in (TIMEOUT, NO_ANSWER) else (0, status)


def answers(samples: Iterable[Sample]) -> str:
    """`200:812 401:60 503:9 timeout:2`: answers by status."""
    counts = Counter(sample.status for sample in samples)
    return " ".join(
        f"{status_label(status)}:{counts[status]}" for status in sorted(counts, key=_status_order)
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _recovery(seconds: float | None, result: PhaseResult) -> str:
    if seconds is None:
        return f">{result.end - result.fault_end:.1f}"
    return f"{seconds:.2f}"


def phase_table(result: PhaseResult, timeout: float) -> list[str]:
    window = result.fault_end - result.fault_start
    lines = [
        f"== {result.name}: {result.title} ==",
        f"AUTH_MODE={result.auth_mode}; fault from {result.fault_start:.2f} s to"
        f" {result.fault_end:.2f} s ({window:.2f} s); load stopped at {result.end:.2f} s",
        f"{'kind':<12}{'reqs':>6}{'p50 ms':>9}{'p99 ms':>9}{'worst ms':>10}{'recover s':>11}"
        "  answers",
    ]
    rows = [(kind.name, result.of_kind(kind.name), kind.valid) for kind in result.kinds]
    rows.append(("all", result.samples, False))
    for name, samples, valid in rows:
        latencies = [sample.latency for sample in samples]
        recovery = _recovery(result.recovery(name), result) if valid else "-"
        if name == "all":
            recovery = _recovery(result.recovered_in(), result)
        lines.append(
            f"{name:<12}{len(samples):>6}{_ms(percentile(latencies, 0.5)):>9}"
            f"{_ms(percentile(latencies, 0.99)):>9}{_ms(max(latencies, default=0)):>10}"
            f"{recovery:>11}  {answers(samples)}"
        )
    for period in ("before", "during", "after"):
        chosen = [sample for sample in result.samples if result.period(sample) == period]
        latencies = [sample.latency for sample in chosen]
        lines.append(
            f"  sent {period:<6} the fault: {len(chosen):>5} requests, p99"
            f" {_ms(percentile(latencies, 0.99))} ms, worst {_ms(max(latencies, default=0))} ms;"
            f" {answers(chosen) or '-'}"
        )
    errors = Counter(
        (s.kind, status_label(s.status), s.code or "") for s in result.samples if not s.ok
    )
    if errors:
        described = ", ".join(
            f"{kind} {status} {code}".rstrip() + f" x{count}"
            for (kind, status, code), count in sorted(errors.items())
        )
        lines.append(f"  not 2xx (kind, status, error code): {described}")
    if any(sample.status == TIMEOUT for sample in result.samples):
        lines.append(f"  timeout: no answer within the client's {timeout:g} s")
    lines.extend(_audit_lines(result.audit))
    if result.plot is not None:
        lines.append(f"  plot: {result.plot}")
    return lines


def _by_type(counts: Counter[str]) -> str:
    return ", ".join(f"{kind} {counts[kind]}" for kind in sorted(counts)) or "none"


def _audit_lines(audit: AuditCount) -> list[str]:
    lines = [
        f"  audit: expected {sum(audit.expected.values())} ({_by_type(audit.expected)});"
        f" written {sum(audit.written.values())}; spilled {sum(audit.spilled.values())};"
        f" lost {audit.lost}"
    ]
    surplus = Counter(
        {
            kind: audit.written[kind] + audit.spilled[kind] - audit.expected[kind]
            for kind in audit.written | audit.spilled
        }
    )
    if +surplus:  # e.g. the events of answers the client gave up waiting for
        lines.append(f"  audit events beyond the expected: {_by_type(+surplus)}")
    if audit.other_written or audit.other_spilled:
        lines.append(
            f"  audit events no answer accounts for: written ({_by_type(audit.other_written)}),"
            f" spilled ({_by_type(audit.other_spilled)})"
        )
    if audit.writers is not None:
        w = audit.writers
        lines.append(
            f"  the {w['writers']} writers' own report (audit_writers; rows, set-up included):"
            f" written {w['written']}, spilled {w['spilled']}, write failures {w['write_failures']}"
        )
    return lines


def summary_table(results: list[PhaseResult]) -> list[str]:
    lines = [
        f"{'fault':<13}{'reqs':>6}{'p99 ms':>9}{'worst ms':>10}{'audit exp':>10}{'written':>8}"
        f"{'spilled':>8}{'lost':>5}{'recover s':>10}  answers"
    ]
    for result in results:
        latencies = [sample.latency for sample in result.samples]
        audit = result.audit
        lines.append(
            f"{result.name:<13}{len(result.samples):>6}{_ms(percentile(latencies, 0.99)):>9}"
            f"{_ms(max(latencies, default=0)):>10}{sum(audit.expected.values()):>10}"
            f"{sum(audit.written.values()):>8}{sum(audit.spilled.values()):>8}{audit.lost:>5}"
            f"{_recovery(result.recovered_in(), result):>10}  {answers(result.samples)}"
        )
    return lines


# --- the plot ---------------------------------------------------------------------------------

_MARKERS = "osD^vP*X"


def _colour(status: int) -> str:
    if 200 <= status < 300:
        return "tab:green"
    if status in (401, 403):
        return "tab:blue"
    if 400 <= status < 500:
        return "tab:purple"
    if status == 503:
        return "tab:orange"
    if status >= 500:
        return "tab:red"
    return "black"  # timeout, no answer


def _legend_label(status: int, timeout: float) -> str:
    return f"timeout ({timeout:g} s)" if status == TIMEOUT else status_label(status)


def plot(result: PhaseResult, path: Path, timeout: float) -> Path:
    """Latency over time, one point a request (colour: status; marker: kind), the fault shaded."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot
    from matplotlib.artist import Artist
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    figure, axes = pyplot.subplots(figsize=(11, 5.5))
    try:
        axes.axvspan(result.fault_start, result.fault_end, color="0.85")
        recovered = result.recovered_in()
        if recovered is not None:
            axes.axvline(result.fault_end + recovered, color="0.4", linestyle="--", linewidth=1)
        marker = {kind.name: _MARKERS[i % len(_MARKERS)] for i, kind in enumerate(result.kinds)}
        for kind in result.kinds:
            for status in sorted({s.status for s in result.of_kind(kind.name)}):
                chosen = [s for s in result.of_kind(kind.name) if s.status == status]
                axes.scatter(
                    [s.start for s in chosen],
                    [max(s.latency * 1000, 0.1) for s in chosen],
                    s=14,
                    marker=marker[kind.name],
                    color=_colour(status),
                    alpha=0.7,
                    linewidths=0,
                )
        axes.set_yscale("log")
        axes.set_xlim(0, max(result.end, result.fault_end) + 0.5)
        axes.set_xlabel("request sent at (s since the load started)")
        axes.set_ylabel("latency (ms, log scale)")
        axes.set_title(f"{result.name}: {result.title}", fontsize=10)
        axes.grid(True, which="major", alpha=0.3)
        statuses = sorted({s.status for s in result.samples}, key=_status_order)
        status_handles: list[Artist] = [
            Line2D(
                [], [], linestyle="", marker="o", color=_colour(s), label=_legend_label(s, timeout)
            )
            for s in statuses
        ]
        status_handles.append(Patch(color="0.85", label="fault"))
        if recovered is not None:
            status_handles.append(Line2D([], [], color="0.4", linestyle="--", label="recovered"))
        kind_handles = [
            Line2D([], [], linestyle="", marker=marker[kind.name], color="0.3", label=kind.name)
            for kind in result.kinds
        ]
        outside = {"bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0.0, "fontsize": 8}
        first = axes.legend(handles=status_handles, title="status", loc="upper left", **outside)
        axes.add_artist(first)
        outside["bbox_to_anchor"] = (1.01, 0.0)
        axes.legend(handles=kind_handles, title="request", loc="lower left", **outside)
        figure.tight_layout()
        figure.savefig(path, dpi=110)
    finally:
        pyplot.close(figure)
    return path
