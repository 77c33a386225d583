"""Turn the measurements of one bench run into Markdown tables and a PNG chart.

Absolute figures drift with the machine and its load, so every comparison is also a ratio
between systems measured in the same run, round after round under the same conditions.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from statistics import median
from typing import Any

from bench.scenarios import (
    BARE,
    HELLO,
    LABELS,
    LATENCY_CONNECTIONS,
    LEAN,
    MLSERVER,
    NAIVE,
    OURS,
    SCENARIOS,
    THROUGHPUT_CONNECTIONS,
    label,
)

PEERS = (HELLO, BARE, LEAN, NAIVE, MLSERVER)
JSON_SCENARIOS = ("single_v2", "single_v1", "rows1000_v2", "rows1000_v1", "rows1000_v1col")


def summarise(records: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, float]]:
    """Per (system, scenario, connections): median req/s, p50, p99 over rounds, spread, failures."""
    groups: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["system"], r["scenario"], r["connections"])].append(r)
    return {key: {
        "rps": median(r["rps"] for r in rs), "min": min(r["rps"] for r in rs),
        "max": max(r["rps"] for r in rs), "p50": median(r["p50_ms"] for r in rs),
        "p99": median(r["p99_ms"] for r in rs), "failures": sum(r["failures"] for r in rs),
        "requests": sum(r["requests"] for r in rs), "rounds": len(rs),
        "share": median(r.get("busiest_worker_share", math.nan) for r in rs),
        "server_cpu_us": median(r.get("server_cpu_us", math.nan) for r in rs),
        "client_cpu_us": median(r.get("client_cpu_us", math.nan) for r in rs),
        "server_cpu_by_round": {r.get("round", 1): r.get("server_cpu_us", math.nan) for r in rs},
    } for key, rs in groups.items()}


def markdown(summary: dict, floor: dict[str, float], memory: list[dict], meta: dict,
             connections: int = THROUGHPUT_CONNECTIONS) -> str:
    parts = [f"# Serving benchmark ({meta['when']})\n", _meta_lines(meta),
             _throughput(summary, connections), _cpu(summary, connections),
             _latency(summary), _binary(summary, floor), _memory(memory), _spread(summary)]
    return "\n".join(p for p in parts if p)


def _meta_lines(meta: dict) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in meta.items() if k != "when") + "\n"


def _peer_key(scenario: str) -> str:
    return "single_v2" if SCENARIOS[scenario].rows == 1 else "rows1000_v2"


def _throughput(summary: dict, c: int) -> str:
    present = [p for p in PEERS if any(k[0] == p for k in summary)]
    head = ["scenario", f"{LABELS[OURS]} req/s", "rows/s",
            *(f"{LABELS[p]} req/s" for p in present), *(f"x {LABELS[p]}" for p in present)]
    lines = [f"## Throughput, {c} connections (median req/s over rounds)\n", _row(head),
             _row(["---"] * len(head))]
    for key in JSON_SCENARIOS:
        ours = summary.get((OURS, key, c))
        if ours is None:
            continue
        peers = [summary.get((p, _peer_key(key), c)) for p in present]
        cells = [SCENARIOS[key].label, _n(ours["rps"]), _n(ours["rps"] * SCENARIOS[key].rows),
                 *(_n(s["rps"]) if s else "-" for s in peers),
                 *(_ratio(ours["rps"], s["rps"]) if s else "-" for s in peers)]
        lines.append(_row(cells))
    return "\n".join(lines) + "\n"


def _cpu(summary: dict, c: int) -> str:
    """Server CPU per request against the bare peer's for the same rows (its V2 JSON: it has no
    V1), and each V1 form's throughput against V2 JSON at the same rows. The ratio is also given
    round by round (each round runs every system once, close together), which the machine's
    drift between rounds does not move."""
    head = ["scenario", "server CPU us/request", "bare peer's", "x bare", "x bare per round",
            "req/s x V2 JSON"]
    lines = [f"## Server CPU per request against the bare WSGI + ORT peer, {c} connections "
             "(medians over rounds)\n", _row(head), _row(["---"] * len(head))]
    for key in JSON_SCENARIOS:
        ours = summary.get((OURS, key, c))
        if ours is None:
            continue
        bare = summary.get((BARE, _peer_key(key), c))
        v2 = summary.get((OURS, _peer_key(key), c))
        lines.append(_row([SCENARIOS[key].label, _n(ours["server_cpu_us"]),
                           _n(bare["server_cpu_us"]) if bare else "-",
                           _ratio(ours["server_cpu_us"], bare["server_cpu_us"]) if bare else "-",
                           _per_round(ours, bare) if bare else "-",
                           _ratio(ours["rps"], v2["rps"]) if v2 else "-"]))
    return "\n".join(lines) + "\n"


def _latency(summary: dict) -> str:
    c = LATENCY_CONNECTIONS
    head = ["system", "scenario", "req/s", "p50 ms", "p99 ms", "p99/p50"]
    lines = [f"## Latency, {c} connection (medians over rounds)\n", _row(head),
             _row(["---"] * len(head))]
    for (system, scenario, conns), s in summary.items():
        if conns == c and SCENARIOS[scenario].rows == 1:
            lines.append(_row([label(system), SCENARIOS[scenario].label, _n(s["rps"]),
                               f"{s['p50']:.3f}", f"{s['p99']:.3f}", _ratio(s["p99"], s["p50"])]))
    return "\n".join(lines) + "\n"


def _binary(summary: dict, floor: dict[str, float]) -> str:
    head = ["connections", "surrogate-serving rows/s", "in-process onnxruntime rows/s",
            "ratio", "p50 ms"]
    lines = ["## 100,000-row binary requests vs in-process onnxruntime (threads = connections)\n",
             _row(head), _row(["---"] * len(head))]
    for (system, scenario, conns), s in sorted(summary.items()):
        if system == OURS and scenario == "binary100k":
            rows_s = s["rps"] * SCENARIOS[scenario].rows
            ort = floor.get(f"ort_rows_per_s_{conns}_threads", math.nan)
            lines.append(_row([str(conns), _n(rows_s), _n(ort), _ratio(rows_s, ort),
                               f"{s['p50']:.1f}"]))
    if "ort_single_row_us" in floor:
        lines.append(f"\nIn-process onnxruntime, one row: {floor['ort_single_row_us']:.1f} us.")
    return "\n".join(lines) + "\n"


def _memory(memory: list[dict]) -> str:
    if not memory:
        return ""
    stages = list(dict.fromkeys(m["stage"] for m in memory))
    head = ["system", "worker", *(f"{stage} RSS / PSS MB" for stage in stages)]
    lines = ["## Memory per worker (smaps_rollup)\n", _row(head), _row(["---"] * len(head))]
    cells: dict[tuple[str, int], dict[str, str]] = defaultdict(dict)
    for m in memory:
        cells[(m["system"], m["worker"])][m["stage"]] = f"{m['rss_mb']:.0f} / {m['pss_mb']:.0f}"
    for (system, worker), by_stage in cells.items():
        lines.append(_row([label(system), str(worker),
                           *(by_stage.get(stage, "-") for stage in stages)]))
    return "\n".join(lines) + "\n"


def _spread(summary: dict) -> str:
    head = ["system", "scenario", "connections", "median req/s", "min", "max", "rounds",
            "failures / requests", "busiest worker's CPU share", "server CPU us/request",
            "load generator CPU us/request"]
    lines = ["## Every run: spread over rounds, failures (socket errors, timeouts, non-2xx), "
             "how much of the server's CPU its busiest process used (50% = balanced over 2), and "
             "CPU time per request in the server's processes and in the load generator "
             "(medians; the two share the machine's cores)\n",
             _row(head), _row(["---"] * len(head))]
    for (system, scenario, conns), s in summary.items():
        lines.append(_row([label(system), SCENARIOS[scenario].label, str(conns), _n(s["rps"]),
                           _n(s["min"]), _n(s["max"]), str(s["rounds"]),
                           f"{s['failures']} / {s['requests']}", f"{s['share']:.0%}",
                           _n(s["server_cpu_us"]), _n(s["client_cpu_us"])]))
    return "\n".join(lines) + "\n"


def chart_png(summary: dict, floor: dict[str, float],
              connections: int = THROUGHPUT_CONNECTIONS) -> bytes:
    """Three panels: req/s at ``connections``, latency at 1, binary rows/s against the floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    systems = [s for s in (OURS, *PEERS) if any(k[0] == s for k in summary)]
    groups = [("single_v2", "single-row"), ("rows1000_v2", "1000-row")]
    width = 0.8 / len(systems)
    for i, system in enumerate(systems):
        key = (lambda g: g) if system == OURS else _peer_key
        values = [summary.get((system, key(g), connections), {}).get("rps", 0)
                  for g, _ in groups]
        axes[0].bar([j + i * width for j in range(len(groups))], values, width,
                    label=label(system))
        lat = summary.get((system, "single_v2", LATENCY_CONNECTIONS))
        if lat:
            axes[1].bar([i - 0.2, i + 0.2], [lat["p50"], lat["p99"]], 0.4,
                        color=["tab:blue", "tab:orange"])
    axes[0].set(yscale="log", ylabel="requests/s", title=f"JSON, {connections} connections",
                xticks=[j + 0.4 - width / 2 for j in range(len(groups))],
                xticklabels=[label for _, label in groups])
    axes[0].legend(fontsize=8)
    axes[1].set(ylabel="ms", title="single-row latency, 1 connection (p50 blue, p99 orange)",
                xticks=range(len(systems)), xticklabels=[label(s) for s in systems])
    axes[1].tick_params(axis="x", labelsize=7)
    binary = sorted((c, s["rps"] * SCENARIOS["binary100k"].rows)
                    for (sy, sc, c), s in summary.items() if sy == OURS and sc == "binary100k")
    xs = [str(c) for c, _ in binary]
    axes[2].bar([j - 0.2 for j in range(len(xs))], [r for _, r in binary], 0.4, label="HTTP")
    axes[2].bar([j + 0.2 for j in range(len(xs))],
                [floor.get(f"ort_rows_per_s_{c}_threads", 0) for c, _ in binary], 0.4,
                label="in-process ORT")
    axes[2].set(ylabel="rows/s", title="100,000-row binary", xticks=range(len(xs)),
                xticklabels=[f"{x} conn." for x in xs])
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _n(value: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _per_round(ours: dict, peer: dict) -> str:
    """Ours against the peer in each round both ran: "1.08 / 1.23 / 1.07"."""
    mine, theirs = ours["server_cpu_by_round"], peer["server_cpu_by_round"]
    return " / ".join(f"{cpu / theirs[r]:.2f}" for r, cpu in sorted(mine.items())
                      if r in theirs and theirs[r])


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and not math.isnan(b) and not math.isnan(a) else "-"
