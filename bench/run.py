"""`make bench`: every speed comparison in one run, a table of ratios, docs/performance.md.

Each comparison is a module here (`cmp_*.py`) with NAME, TITLE, DESCRIPTION and
`run(ctx) -> list[Row]`; it measures a baseline and a subject side by side in this run. One
that fails to run becomes an error row and the others still run. Exits 1, with a `MISSED:` or
`ERROR:` line for each, when a target is missed or a comparison could not be measured.

    BENCH_RUNS=N       repetitions scale (default 40: ~3 minutes on 2 cores)
    BENCH_ONLY=a,b     only these comparisons (docs/performance.md is then left alone)
"""

from __future__ import annotations

import datetime
import importlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType

from harness import DEFAULT_RUNS, ROOT, Context, Row

MODULES = (
    "cmp_cached_token",
    "cmp_login",
    "cmp_accounts",
    "cmp_concurrent",
    "cmp_inprocess",
    "cmp_commands",
    "cmp_listener",
)
DOC = ROOT / "docs" / "performance.md"
DASH = "\N{EN DASH}"
COLUMNS: tuple[str, ...] = ("#", "row", "baseline", "baseline median", "subject median")
COLUMNS += ("ratio", f"min{DASH}max", "target", "result")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _runs() -> int:
    raw = os.environ.get("BENCH_RUNS", "").strip()
    if not raw:
        return DEFAULT_RUNS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise SystemExit(f"bench: BENCH_RUNS must be a positive integer, not {raw!r}")
    return value


def _selected(modules: list[ModuleType]) -> list[ModuleType]:
    raw = os.environ.get("BENCH_ONLY", "").strip()
    if not raw:
        return modules
    names = {m.NAME: m for m in modules}
    wanted = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise SystemExit(
            f"bench: unknown comparison(s) in BENCH_ONLY: {', '.join(unknown)}; "
            f"known: {', '.join(names)}"
        )
    return [m for m in modules if m.NAME in wanted]


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _cells(number: int, row: Row) -> list[str]:
    span = "" if row.lo is None or row.hi is None else f"{row.lo:.2f}{DASH}{row.hi:.2f}x"
    return [
        str(number),
        row.name,
        row.baseline,
        row.base_value,
        row.subj_value,
        _ratio(row.ratio),
        span,
        str(row.target or ""),
        row.result,
    ]


def _note(row: Row) -> str:
    if row.error:
        return f"ERROR: {row.error}"
    if row.skipped:
        return f"skipped: {row.skipped}"
    return row.note


def text_table(rows: list[Row]) -> str:
    """The table for the terminal, with each row's note below it."""
    cells = [list(COLUMNS)] + [_cells(i, r) for i, r in enumerate(rows, 1)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = []
    for n, line in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines += [f"  {i}. {_note(r)}" for i, r in enumerate(rows, 1) if _note(r)]
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    """The table for docs/performance.md, with each row's note below it."""
    esc = [[c.replace("|", "\\|") for c in _cells(i, r)] for i, r in enumerate(rows, 1)]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c) + " |" for c in esc]
    notes = [f"{i}. {_note(r)}" for i, r in enumerate(rows, 1) if _note(r)]
    return "\n".join([*lines, "", "Notes, by row:", "", *notes])


def machine() -> str:
    """Cores, CPU, OS and the Python timed."""
    try:
        cores = len(os.sched_getaffinity(0))  # what `nproc` says
    except AttributeError:
        cores = os.cpu_count() or 0
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return (
        f"{cores} cores (nproc){f', {cpu}' if cpu else ''}; {platform.system()} "
        f"{platform.release()}; {platform.python_implementation()} {platform.python_version()}"
    )


def revision() -> str:
    """The commit measured, and whether the tree had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head or 'unknown'}{' with uncommitted changes' if dirty else ''}"


INTRO = """\
# Performance

<!-- Generated by `make bench` (bench/run.py, one module per comparison in bench/cmp_*.py).
     Edit those, not this file: the next full run rewrites it. -->

`make bench` runs every speed comparison below in one run, prints this table and writes this
file. Every row is a **ratio** of a subject to a baseline measured side by side in the same run
(interleaved, same machine, same moment), never an absolute time: absolute times change with the
machine, ratios much less. **ratio** is median(subject) / median(baseline) over all samples
(for requests/s, listener / http.server); **min{dash}max** is the lowest and highest ratio of the
individual rounds (each round's own medians), i.e. how steady the ratio was in this run. The
medians are shown for orientation only. A missed target makes `make bench` exit 1 with one
`MISSED:` line per miss (and `ERROR:` for a comparison that could not run); "measured" rows
have no target, "skipped" ones could not be measured here (the reason is in the notes).

Processes are timed from start to exit with the interpreter of a fresh venv into which the
**wheel** of the current tree is installed (`pip wheel` of a copy of the tree,
`python -m venv`, `pip install` with dependencies from the index; cached under
`$TMPDIR/loopauth-bench-cache-UID/` by the wheel's content hash, so reruns skip the install),
with `PYTHON*`, `LOOPAUTH_*`, `BROWSER` and display variables removed from their environment
and private temp folders as `LOOPAUTH_HOME` and XDG folders. Emulators, `redis-server` and the
D-Bus session listen on 127.0.0.1 (or a private socket) with random ports and are stopped when
their comparison ends.

## How to rerun

    make bench                                  # everything; rewrites this file; exit 1 on a miss
    BENCH_RUNS=10 make bench                    # fewer repetitions: quicker, noisier
    BENCH_ONLY=login,accounts make bench        # a subset; this file is left as it is

Names for `BENCH_ONLY`: {names}.
"""


def document(rows: list[Row], modules: list[ModuleType], runs: int, seconds: float) -> str:
    """The whole of docs/performance.md."""
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        INTRO.format(dash=DASH, names=", ".join(f"`{m.NAME}`" for m in modules)),
        "## Last run\n",
        f"{when}; {machine()}; commit {revision()}; `BENCH_RUNS={runs}`; "
        f"the whole run took {seconds / 60:.1f} min.\n",
        markdown_table(rows),
        "",
        "## What each row measures\n",
    ]
    for i, module in enumerate(modules, 1):
        parts += [f"### {i}. {module.TITLE} (`{module.NAME}`)\n", module.DESCRIPTION, ""]
    parts += [
        "What the cached-token path may import, and why it stays cheap, is in",
        "[architecture.md](architecture.md#the-cached-token-path).",
        "",
    ]
    return "\n".join(parts)


def run_one(module: ModuleType, ctx: Context) -> list[Row]:
    """Run one comparison; any failure becomes its error row (and a traceback on stderr)."""
    start = time.perf_counter()
    ctx.log(f"== {module.NAME}: {module.TITLE}")
    try:
        with ctx.stack:
            rows: list[Row] = module.run(ctx)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        traceback.print_exc(limit=-3, file=sys.stderr)
        rows = [Row(module.NAME, module.TITLE, "", "", error=f"{type(exc).__name__}: {exc}")]
    finally:
        ctx.stack = type(ctx.stack)()
    ctx.log(f"== {module.NAME} took {time.perf_counter() - start:.1f} s")
    return rows


def main() -> int:
    """Run the selected comparisons, print the table, write the docs, report misses."""
    signal.signal(signal.SIGTERM, _interrupt)  # cleanups run on `kill` as on Ctrl+C
    runs = _runs()
    every = [importlib.import_module(name) for name in MODULES]
    selected = _selected(every)
    start = time.perf_counter()
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory(prefix="loopauth-bench-") as tmp:
            ctx = Context(runs, Path(tmp))
            for module in selected:
                rows += run_one(module, ctx)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    seconds = time.perf_counter() - start
    print(f"\nloopauth bench: {machine()}; BENCH_RUNS={runs}; {seconds:.0f} s\n")
    print(text_table(rows), flush=True)
    if len(selected) == len(every):
        tmp_doc = DOC.with_name(f".{DOC.name}.tmp")
        tmp_doc.write_text(document(rows, every, runs, seconds))
        os.replace(tmp_doc, DOC)
        print(f"\nwrote {DOC.relative_to(ROOT)}")
    else:
        print(f"\nBENCH_ONLY is set: {DOC.relative_to(ROOT)} left as it is")
    failed = [r for r in rows if r.failed]
    for row in failed:
        if row.error:
            print(f"ERROR: {row.comparison}: {row.name}: {row.error}", file=sys.stderr)
        else:
            print(
                f"MISSED: {row.name}: {_ratio(row.ratio)} (rounds {_ratio(row.lo)}{DASH}"
                f"{_ratio(row.hi)}), target {row.target}"
                + ("" if row.condition_ok else f"; {row.note}"),
                file=sys.stderr,
            )
    if failed:
        print(f"bench: {len(failed)} of {len(rows)} rows failed", file=sys.stderr)
        return 1
    print("bench: every target met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
