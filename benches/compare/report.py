#!/usr/bin/env python3
"""Turns harness.py's raw results into BENCHMARKS.md and the plots.

    python3 report.py [results/full.txt] [--out ../../BENCHMARKS.md] [--plots plots]

Medians and spreads (min-max) per row, metric and system; a table of ratios
ivy ÷ other (below 1.0: ivy wins; for a higher-is-better metric the ratio is
inverted so that this still holds); one PNG per workload family; then the
hand-written NOTES.md (workload definitions, fairness notes, findings) verbatim.

The Python suite (rows py_*, harness.py's suite="python") gets its own section:
the absolute table over asyncio, uvloop, gevent, ivyrt (one worker) and
ivyrt-w2, and the ratios ivyrt ÷ asyncio / uvloop / gevent against issue 14's
target (at most 0.5 of asyncio, below 1.0 of gevent). A results file with only
Python rows (`run.sh --python`) gives a report with only that section.
"""

import argparse
import os
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from harness import HERE, HOOK_ROWS, ROOT, ROWS, SUITES, SYSTEMS

# metric -> (label, better). Add one line per new metric.
METRICS = {
    "ns_per_switch": ("ns per switch", "lower"),
    "ns_per_task": ("ns per task", "lower"),
    "total_ms": ("total ms", "lower"),
    "overhead_ms": ("ms beyond the longest sleep", "lower"),
    "peak_rss": ("peak RSS, MiB", "lower"),
    "bytes_per_task": ("RSS bytes per task", "lower"),
    "ns_per_roundtrip": ("ns per round trip", "lower"),
    "ns_per_item": ("ns per item", "lower"),
    "ns_per_lock": ("ns per lock", "lower"),
    "ns_per_acquire": ("ns per acquire", "lower"),
    # the network rows (server + load generator):
    "msgs_per_s": ("messages per second", "higher"),
    "req_per_s": ("requests per second", "higher"),
    "p50_us": ("p50 latency, µs", "lower"),
    "p99_us": ("p99 latency, µs", "lower"),
    # the hook rows:
    "wall_ms": ("wall time, ms", "lower"),
}

HOOK_SYSTEMS = ("ivy-hook", "ivy-nohook", "threads")

# Plot panels of the network family: one throughput panel per row, and one
# latency panel per row with p50 and p99 side by side.
THROUGHPUT = ("msgs_per_s", "req_per_s")
LATENCY = ("p50_us", "p99_us")

FAMILIES = {
    "switch": "Context switch",
    "tasks": "Spawning and joining tasks",
    "timers": "Timers",
    "memory": "Memory per idle task",
    "sync": "Synchronisation",
    "net": "Network: TCP echo (loadgen) and HTTP hello (wrk)",
    "python": "Python: ivyrt against asyncio, uvloop and gevent",
}

# The Python section's subjects (ratio numerators) and its reference systems.
PY_SUBJECTS = ["ivyrt", "ivyrt-w2"]
PY_REFERENCES = ["asyncio", "uvloop", "gevent"]

COLORS = {"ivy": "#2ca02c", "tokio": "#1f77b4", "may": "#9467bd", "go": "#17becf",
          "asyncio": "#ff7f0e", "uvloop": "#d62728", "gevent": "#8c564b",
          "ivyrt": "#2ca02c", "ivyrt-w2": "#98df8a"}

LINE = re.compile(r"^RESULT (.*?)(?: error=(.*))?$")


def parse(path):
    info, recs = {}, []
    for line in Path(path).read_text().splitlines():
        if line.startswith("# ") and ": " in line:
            k, v = line[2:].split(": ", 1)
            info[k] = v
            continue
        m = LINE.match(line)
        if not m:
            continue
        rec = dict(kv.split("=", 1) for kv in m.group(1).split())
        rec["error"] = m.group(2)
        recs.append(rec)
    return info, recs


class Cell:
    def __init__(self):
        self.values, self.errors = [], []

    @property
    def failed(self):
        return bool(self.errors)

    @property
    def median(self):
        return statistics.median(self.values) if self.values else None


def aggregate(recs):
    """{row: {metric: {system: Cell}}} with metric order kept per row."""
    table = defaultdict(lambda: defaultdict(lambda: defaultdict(Cell)))
    fails = []
    for r in recs:
        if r.get("status") == "fail":
            fails.append(r)
        else:
            table[r["row"]][r["metric"]][r["system"]].values.append(float(r["value"]))
    for r in fails:  # a failure counts against every metric of its row
        metrics = [r["metric"]] if r["metric"] in table[r["row"]] else list(table[r["row"]])
        if not metrics:
            metrics = [r["metric"]]
        for m in metrics:
            table[r["row"]][m][r["system"]].errors.append(r["error"] or "failed")
    return table


def fmt(x):
    if x is None:
        return "—"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def ratio(ivy, other, better):
    if ivy is None or other is None or other == 0 or ivy == 0:
        return None
    return ivy / other if better == "lower" else other / ivy


def systems_in(table, suite="rust"):
    """The systems with results in the table's rows of that suite, in SYSTEMS order."""
    ids = {r.id for r in ROWS if r.suite == suite}
    seen = {s for rid, row in table.items() if rid in ids for m in row.values() for s in m}
    return [s for s in SYSTEMS if s in seen and s in SUITES[suite]]


def cell_text(c, s, footnotes, subject="ivy"):
    """One table cell: median [min-max], or FAIL with a footnote, or a dash."""
    if c is None:
        return "pending" if s == subject else "—"
    if c.failed:
        err = short_error(c.errors[0])
        if err not in footnotes:
            footnotes.append(err)
        return f"**FAIL**[^f{footnotes.index(err) + 1}]"
    if len(c.values) == 1:
        return fmt(c.median)
    return f"{fmt(c.median)} [{fmt(min(c.values))}–{fmt(max(c.values))}]"


def python_notes(notes):
    """NOTES.md's Python section alone (a report of the Python rows only)."""
    m = re.search(r"^## Python: .*?(?=^## |\Z)", notes, re.M | re.S)
    return m.group(0) if m else ""


# The metric issue 14's target is judged on, per Python row (default: the row's
# first metric). A sleep's total is at least the longest sleep by construction:
# the runtime's own cost is what beyond it. Latency and memory are reported.
PY_TARGET_METRIC = {"py_sleeps": "overhead_ms", "py_tcp_echo": "msgs_per_s"}


def python_section(table, footnotes):
    """The Python suite: absolute results and ivyrt's ratios against the
    asyncio-family loops and gevent, with issue 14's target per row."""
    rows = [r for r in ROWS if r.suite == "python" and r.id in table]
    if not rows:
        return []
    systems = systems_in(table, "python")
    out = []
    w = out.append
    w("## Python: ivyrt against asyncio, uvloop and gevent\n")
    w("The same CPython runs every system; ivyrt is the installed package "
      "(`pip install ./bindings/python`), `ivyrt` with one worker (asyncio's model, the "
      "default), `ivyrt-w2` with `workers=2`. asyncio, uvloop and gevent run on one thread. "
      "Sizes: see harness.py's py_* rows.\n")
    w("| row | metric | " + " | ".join(systems) + " |")
    w("|---|---|" + "---|" * len(systems))
    for row in rows:
        for metric, cells in table[row.id].items():
            label = METRICS.get(metric, (metric, ""))[0]
            tds = [cell_text(cells.get(s), s, footnotes, "ivyrt") for s in systems]
            w(f"| {row.id} | {label} | " + " | ".join(tds) + " |")
    w("")
    pairs = [(a, b) for a in PY_SUBJECTS if a in systems for b in PY_REFERENCES if b in systems]
    if pairs:
        w("Ratios (below 1.0: ivyrt wins; for per-second metrics other ÷ ivyrt). Issue 14's "
          "target for `ivyrt`: at most 0.50 against asyncio and below 1.00 against gevent "
          "on every row, judged on the row's main metric (time per operation; the sleeps' "
          "cost beyond the longest sleep; the echo's messages per second); latency and "
          "memory are reported beside it.\n")
        w("| row | metric | " + " | ".join(f"{a} ÷ {b}" for a, b in pairs) + " | target met |")
        w("|---|---|" + "---|" * (len(pairs) + 1))
        for row in rows:
            for metric, cells in table[row.id].items():
                label, better = METRICS.get(metric, (metric, "lower"))
                tds, rs = [], {}
                for a, b in pairs:
                    ca, cb = cells.get(a), cells.get(b)
                    if ca is None or cb is None or ca.failed or cb.failed:
                        tds.append("—" if ca is None or cb is None else "fail")
                        continue
                    r = ratio(ca.median, cb.median, better)
                    rs[(a, b)] = r
                    tds.append("—" if r is None else (f"**{r:.2f}**" if r < 1 else f"{r:.2f}"))
                ra, rg = rs.get(("ivyrt", "asyncio")), rs.get(("ivyrt", "gevent"))
                judged = PY_TARGET_METRIC.get(row.id, next(iter(table[row.id])))
                if metric != judged or ra is None or rg is None:
                    verdict = "—"  # reported, not judged
                else:
                    verdict = "yes" if ra <= 0.5 and rg < 1 else "**no**"
                w(f"| {row.id} | {label} | " + " | ".join(tds) + f" | {verdict} |")
        w("")
    return out


def short_error(e):
    e = e.replace("IoError(Os { code: 12, kind: OutOfMemory, message: \"Cannot allocate memory\" })",
                  "ENOMEM")
    return e if len(e) < 160 else e[:157] + "..."


def markdown(info, table, plots_rel, notes):
    systems = systems_in(table)
    others = [s for s in systems if s != "ivy"]
    rows = [r for r in ROWS if r.id in table and r.suite == "rust"]
    python_only = not rows
    out = []
    w = out.append
    if python_only:
        w("# Benchmarks: the Python package ivyrt against asyncio, uvloop and gevent\n")
    else:
        w("# Benchmarks: ivy against tokio, may, Go and Python asyncio\n")
    w("<!-- Generated by benches/compare/report.py from "
      f"benches/compare/results/{info.get('mode', 'full')}.txt; edit NOTES.md, not this file. -->\n")
    if info.get("mode") == "quick":
        w("> **QUICK RUN** (`run.sh --quick`): sizes 10× smaller, one run each. A smoke test of "
          "the harness, not numbers to cite. `benches/compare/run.sh` without `--quick` "
          "produces the real table.\n")
    w(f"Run of {info.get('date', '?')}: {info.get('runs', '?')} measured runs per system and "
      f"workload (each a fresh process with its own warm-up round at n/10; for the network "
      f"rows a fresh server process and a timed warm-up before the timed measurement), "
      f"interleaved across systems; the table gives the **median**, and the spread "
      f"**min–max** in brackets. "
      + ("Workers: as each Python system's name says (below).\n" if python_only else
         f"Every runtime gets {info.get('workers', '?')} workers "
         "(all cores), except where a workload fixes one worker (`switch`) and asyncio/uvloop, "
         "which have one thread by design.\n"))
    if python_only:
        w("**Reproduce:** `benches/compare/run.sh --python` (the Python rows only; it installs "
          "gevent and uvloop if missing and ivyrt into `target/pyvenv`, then writes "
          "`benches/compare/results/PYTHON.md`).\n")
    else:
        w("**Reproduce:** `benches/compare/run.sh` (full, about 30 minutes on this machine, see "
          "the wall time below; most of it Python and the timed network rows) or "
          "`benches/compare/run.sh --quick` (under 5 minutes; it writes "
          "`benches/compare/results/QUICK.md` instead of this file). It installs Go, "
          "matplotlib, uvloop and gevent if missing, builds everything in release mode, "
          "installs ivyrt into `target/pyvenv`, runs `harness.py`, then `report.py`. "
          "The Python rows (ivyrt against asyncio, uvloop and gevent) and the hook rows are part "
          "of every run and have a section each below; `run.sh --python` runs the Python rows "
          "alone.\n")

    w("## Machine\n")
    w("| | |\n|---|---|")
    for k in ["cpu", "cores", "memory", "kernel", "vm.max_map_count", "rustc", "go", "python",
              "uvloop", "gevent", "ivyrt", "tokio", "async-channel", "may", "mio (loadgen)", "wrk", "RLIMIT_NOFILE",
              "ivy commit", "ivyrt commit", "loadavg before",
              "loadavg after", "wall time"]:
        if k in info:
            w(f"| {k} | {info[k]} |")
    w("")
    w("The machine is shared: other engineers were compiling on it during the run "
      "(see the load averages), so absolute numbers carry noise; the interleaving spreads "
      "it over all systems, and the min–max spread shows how much there was.\n")

    footnotes = []
    if rows:  # the Rust suite's sections
        # Headline: ivy against the best peer that completed.
        w("## Headline: ivy against the best other system\n")
        w("| workload | metric | ivy | best other | ivy ÷ best (<1: ivy wins) |")
        w("|---|---|---|---|---|")
        pending = []
        for row in rows:
            for metric, cells in table[row.id].items():
                label, better = METRICS.get(metric, (metric, "lower"))
                if "ivy" not in cells:
                    pending.append(row)
                    break
                ivy = cells["ivy"]
                peers = [(s, c.median) for s, c in cells.items()
                         if s != "ivy" and not c.failed and c.median is not None]
                if not peers:
                    continue
                pick = min if better == "lower" else max
                best_s, best_v = pick(peers, key=lambda p: p[1])
                if ivy.failed:
                    w(f"| {row.id} | {label} | **FAIL** | {best_s} {fmt(best_v)} | — |")
                    continue
                r = ratio(ivy.median, best_v, better)
                verdict = "ivy wins" if r < 1 else "**ivy loses**"
                w(f"| {row.id} | {label} | {fmt(ivy.median)} | {best_s} {fmt(best_v)} | "
                  f"{r:.2f} ({verdict}) |")
        w("")

        w("## Absolute results (median, [min–max])\n")
        w("| workload | metric | " + " | ".join(systems) + " |")
        w("|---|---|" + "---|" * len(systems))
        for row in rows:
            for metric, cells in table[row.id].items():
                label = METRICS.get(metric, (metric, ""))[0]
                tds = []
                for s in systems:
                    c = cells.get(s)
                    if c is None:
                        tds.append("pending" if s == "ivy" else "—")
                    elif c.failed:
                        err = short_error(c.errors[0])
                        if err not in footnotes:
                            footnotes.append(err)
                        tds.append(f"**FAIL**[^f{footnotes.index(err) + 1}]")
                    elif len(c.values) == 1:
                        tds.append(fmt(c.median))
                    else:
                        tds.append(f"{fmt(c.median)} [{fmt(min(c.values))}–{fmt(max(c.values))}]")
                w(f"| {row.id} | {label} | " + " | ".join(tds) + " |")
        w("")
        for i, e in enumerate(footnotes, 1):
            w(f"[^f{i}]: {e}")
        w("")

        w("## Ratios: ivy ÷ other (below 1.0 means ivy wins)\n")
        w("For the per-second metrics (higher is better) the ratio is other ÷ ivy, so that "
          "below 1.0 still means ivy wins.\n")
        w("| workload | metric | " + " | ".join(others) + " |")
        w("|---|---|" + "---|" * len(others))
        for row in rows:
            for metric, cells in table[row.id].items():
                if "ivy" not in cells:
                    continue
                label, better = METRICS.get(metric, (metric, "lower"))
                ivy = cells["ivy"]
                tds = []
                for s in others:
                    c = cells.get(s)
                    if c is None:
                        tds.append("—")
                    elif ivy.failed:
                        tds.append("ivy fails")
                    elif c.failed:
                        tds.append(f"{s} fails")
                    else:
                        r = ratio(ivy.median, c.median, better)
                        tds.append("—" if r is None else (f"**{r:.2f}**" if r < 1 else f"{r:.2f}"))
                w(f"| {row.id} | {label} | " + " | ".join(tds) + " |")
        w("")
        w("Bold: ivy wins.\n")

        if pending:
            w("## Pending for ivy\n")
            w("These rows run for every other system already; ivy's side is not written yet. "
              "Each is one entry in ivy-bench's `WORKLOADS` table:\n")
            for row in pending:
                w(f"- `{row.id}`: {row.title}")
            w("")

    hook_section(w, table, info)

    first_py_note = len(footnotes)
    py = python_section(table, footnotes)
    out.extend(py)
    if len(footnotes) > first_py_note:
        for i, e in enumerate(footnotes[first_py_note:], first_py_note + 1):
            w(f"[^f{i}]: {e}")
        w("")

    w("## Plots\n")
    w("Bars are medians, whiskers min–max; a log scale where the systems differ by more "
      "than 10×.\n")
    for fam, title in FAMILIES.items():
        if any(r.family == fam and r.id in table for r in ROWS):
            w(f"### {title}\n\n![{title}]({plots_rel}/{fam}.png)\n")
    w(notes)
    return "\n".join(out)


def hook_section(w, table, info):
    """The hook rows: one client program with ivy's libc hook, without it, and
    on one OS thread per request (NOTES.md, "Hooked libc calls")."""
    rows = [r for r in HOOK_ROWS if r.id in table]
    if not rows:
        return
    workers = info.get("workers", "?")
    w("## Hooked libc calls: unmodified blocking clients in ivy tasks\n")
    w("The same client program three ways: ivy tasks with the libc hook (`ivy-hook`: "
      "`LD_PRELOAD=libivy_hook.so` for the C program, the `hook` feature for the Rust one), "
      f"ivy tasks without it (`ivy-nohook`, {workers} workers), and one OS thread per request "
      "(`threads`). Every request is in flight at once against a local server that delays each "
      "answer; every body is checked byte for byte. Ideal: one delay; without the hook: "
      "n × delay ÷ workers.\n")
    w("| workload | n | delay, ms | metric | " + " | ".join(HOOK_SYSTEMS) + " | ivy-hook ÷ threads |")
    w("|---|---|---|---|" + "---|" * (len(HOOK_SYSTEMS) + 1))
    for row in rows:
        for metric, cells in table[row.id].items():
            label = METRICS.get(metric, (metric, ""))[0]
            n = row.quick_n if info.get("mode") == "quick" else row.n
            tds = []
            for sname in HOOK_SYSTEMS:
                c = cells.get(sname)
                if c is None:
                    tds.append("—")
                elif c.failed:
                    tds.append("**FAIL**: " + short_error(c.errors[0]))
                elif len(c.values) == 1:
                    tds.append(fmt(c.median))
                else:
                    tds.append(f"{fmt(c.median)} [{fmt(min(c.values))}–{fmt(max(c.values))}]")
            hook, thr = cells.get("ivy-hook"), cells.get("threads")
            r = (ratio(hook.median, thr.median, "lower")
                 if hook and thr and not hook.failed and not thr.failed else None)
            w(f"| {row.id} | {n} | {row.delay_ms} | {label} | " + " | ".join(tds)
              + f" | {'—' if r is None else f'{r:.2f}'} |")
    w("")


def log_scale(values):
    ok = [v for v in values if v]
    return bool(ok) and max(ok) / max(min(ok), 1e-9) > 10


def missing_mark(ax, x, s, cells):
    what = "FAIL" if s in cells else ("pending" if s == "ivy" else "n/a")
    ax.text(x, 0.02, what, ha="center", va="bottom", rotation=90, fontsize=8,
            color="red" if what == "FAIL" else "grey", transform=ax.get_xaxis_transform())


def bar_panel(ax, row, metric, cells, systems):
    """One metric of one row: a bar per system (median, whiskers min-max)."""
    label, better = METRICS.get(metric, (metric, "lower"))
    xs = list(range(len(systems)))
    meds = [cells[s].median if s in cells and not cells[s].failed else None for s in systems]
    for x, s, m in zip(xs, systems, meds):
        if m:
            vals = cells[s].values
            ax.bar(x, m, color=COLORS.get(s, "grey"),
                   yerr=[[m - min(vals)], [max(vals) - m]], capsize=3)
            ax.text(x, m, fmt(m), ha="center", va="bottom", fontsize=7)
        else:
            missing_mark(ax, x, s, cells)
    if log_scale(meds):
        ax.set_yscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels(systems, rotation=30, fontsize=8)
    ax.set_title(f"{row.id}\n{label} ({better} is better)", fontsize=9)


def latency_panel(ax, row, metrics, systems):
    """p50 and p99 of one row side by side per system (p99 hatched)."""
    xs = list(range(len(systems)))
    width = 0.4
    allv = []
    for k, metric in enumerate(LATENCY):
        cells = metrics.get(metric, {})
        for x, s in zip(xs, systems):
            c = cells.get(s)
            if c is None or c.failed or c.median is None:
                if k == 0:
                    missing_mark(ax, x, s, cells)
                continue
            m = c.median
            allv.append(m)
            ax.bar(x + (k - 0.5) * width, m, width, color=COLORS.get(s, "grey"),
                   hatch="//" if k else None, edgecolor="white" if k else None,
                   yerr=[[m - min(c.values)], [max(c.values) - m]], capsize=2)
            ax.text(x + (k - 0.5) * width, m, fmt(m), ha="center", va="bottom", fontsize=6)
    if log_scale(allv):
        ax.set_yscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels(systems, rotation=30, fontsize=8)
    ax.set_title(f"{row.id}\nlatency, µs: p50 (plain), p99 (hatched); lower is better",
                 fontsize=9)


def plots(table, outdir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib missing; no plots", file=sys.stderr)
        return
    outdir.mkdir(parents=True, exist_ok=True)
    for fam, title in FAMILIES.items():
        rows = [row for row in ROWS if row.family == fam and row.id in table]
        if not rows:
            continue
        systems = systems_in(table, rows[0].suite)
        if fam == "net":
            # Two panel rows: throughput on top, latency below, a column per row.
            fig, axes = plt.subplots(2, len(rows), figsize=(4.2 * len(rows), 8.4),
                                     squeeze=False)
            for col, row in enumerate(rows):
                metrics = table[row.id]
                tput = [m for m in THROUGHPUT if m in metrics]
                if tput:
                    bar_panel(axes[0][col], row, tput[0], metrics[tput[0]], systems)
                else:  # every system failed: the failure is the only "metric"
                    m = next(iter(metrics))
                    bar_panel(axes[0][col], row, m, metrics[m], systems)
                latency_panel(axes[1][col], row, metrics, systems)
        else:
            panels = [(row, m) for row in rows for m in table[row.id]]
            fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2),
                                     squeeze=False)
            for ax, (row, metric) in zip(axes[0], panels):
                bar_panel(ax, row, metric, table[row.id][metric], systems)
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(outdir / f"{fam}.png", dpi=110)
        plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="?", default=str(HERE / "results/full.txt"))
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    ap.add_argument("--plots", default=str(HERE / "plots"))
    args = ap.parse_args()
    info, recs = parse(args.results)
    table = aggregate(recs)
    plots_dir = Path(args.plots).resolve()
    out = Path(args.out).resolve()
    plots(table, plots_dir)
    # Relative, so that the links work in the repository (results/QUICK.md and
    # results/PYTHON.md link to ../plots/...).
    rel = Path(os.path.relpath(plots_dir, out.parent))
    notes_path = HERE / "NOTES.md"
    notes = notes_path.read_text() if notes_path.exists() else ""
    if not any(r.suite == "rust" and r.id in table for r in ROWS):
        notes = python_notes(notes)
    out.write_text(markdown(info, table, rel.as_posix(), notes))
    print(f"report: wrote {out} and {plots_dir}/*.png", file=sys.stderr)


if __name__ == "__main__":
    main()
