"""The benchmarks' one harness: shared options, run metadata, JSON lines and tables.

A benchmark builds its parser with :func:`parser` (the options the benchmarks share, each benchmark giving its
own default or help where they differ), finishes it with :func:`finish` (checks, backend resolved, logging set
up), writes its records through :class:`JsonLines` (one JSON object a line on stdout, appended to ``--out
FILE.jsonl`` when given; every record carries ``bench``, ``load_avg_1m`` and the run's ``meta``: host, CPU count,
versions, git commit, time) and prints its tables with :func:`format_table` (plain, Markdown or rich).

``python -m benchmarks.common FILE.jsonl [--where KEY=VALUE] [--columns A,B.C] [--style rich]`` prints a table
of the records of any benchmark's JSON lines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib.metadata
import io
import json
import logging
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

ROOT = Path(__file__).resolve().parents[1]  # the repository: configs/, tests/data/
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
DISTRIBUTIONS = (
    "numpy",
    "dask",
    "distributed",
    "pyarrow",
    "faiss-cpu",
    "faiss-gpu-cu12",
    "cupy-cuda12x",
    "daskcluster",
)

# --------------------------------------------------------------------------------------------- options
# name -> (flags, argparse keywords); a benchmark may change any keyword (default, help, type, dest)
OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "backend": (
        ("--backend",),
        {
            "default": "cpu",
            "choices": ["cpu", "gpu", "auto"],
            "help": "compute backend (auto: the GPU when there is one)",
        },
    ),
    "n": (("--n",), {"type": int, "default": None, "help": "faces in the synthetic day"}),
    "dim": (("--dim",), {"type": int, "default": 256, "help": "feature dimension"}),
    "identities": (("--identities",), {"type": int, "default": 0, "help": "synthetic population (0 = n / 5)"}),
    "seed": (("--seed",), {"type": int, "default": 0, "help": "synth seed"}),
    "repeats": (
        ("--repeats",),
        {"type": int, "default": 1, "help": "timed runs per configuration (the fastest is kept)"},
    ),
    "set": (
        ("--set",),
        {
            "action": "append",
            "default": [],
            "metavar": "KEY=VALUE",
            "help": "config override (repeatable, as daskcluster run-day --set)",
        },
    ),
    "out": (("--out",), {"type": Path, "default": None, "help": "also append the JSON lines to this file"}),
    "quick": (("--quick",), {"action": "store_true", "help": "tiny sizes (for the tests)"}),
    "verbose": (("-v", "--verbose"), {"action": "store_true", "help": "log progress on stderr"}),
}


def parser(
    doc: str, *options: str, formatter: type = argparse.ArgumentDefaultsHelpFormatter, **changes: dict[str, Any]
) -> argparse.ArgumentParser:
    """A parser described by ``doc``'s first paragraph with the shared ``options`` (keys of :data:`OPTIONS`, in
    that order); ``changes[name]`` updates that option's keywords, e.g. ``n={"default": 1000}``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=formatter)
    unknown = set(changes) - set(options)
    if unknown:
        raise ValueError(f"changes to options not added: {sorted(unknown)}")
    for name in options:
        flags, kw = OPTIONS[name]
        p.add_argument(*flags, **{**kw, **changes.get(name, {})})
    return p


def finish(p: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Checks of the shared options; ``--backend auto`` resolved to what this machine has."""
    if getattr(args, "repeats", 1) < 1:
        p.error("need --repeats >= 1")
    if getattr(args, "backend", None) is not None:
        from daskcluster.backends import resolve_backend_name

        args.backend = resolve_backend_name(args.backend)
    return args


def parse_sizes(text: str) -> list[int]:
    """``"0,1e5,300000"`` -> ``[0, 100000, 300000]`` (sorted, unique)."""
    return sorted({int(float(s)) for s in str(text).split(",") if s.strip()})


def setup_logging(
    args: argparse.Namespace, quiet: int = logging.WARNING, fmt: str = LOG_FORMAT, datefmt: str | None = None
) -> None:
    """Logging on stderr: INFO with ``--verbose``, else ``quiet``."""
    level = logging.INFO if getattr(args, "verbose", False) else quiet
    logging.basicConfig(level=level, stream=sys.stderr, format=fmt, datefmt=datefmt)


# --------------------------------------------------------------------------------------------- metadata
def git_commit() -> dict[str, Any] | None:
    """HEAD of the repository and whether tracked files differ from it (None outside a git checkout)."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # a read-only look: never take the index lock

    def git(*argv: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), *argv], capture_output=True, text=True, timeout=20, env=env, check=True
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "-uno"))}
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in DISTRIBUTIONS:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


@functools.cache
def machine_meta() -> dict[str, Any]:
    """What does not change during a process: host, platform, CPU count, versions, git commit."""
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": versions(),
        "git": git_commit(),
    }


def run_meta() -> dict[str, Any]:
    """:func:`machine_meta` and the time (UTC) the run started."""
    return {**machine_meta(), "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def record(bench: str, **fields: Any) -> dict[str, Any]:
    """A record of benchmark ``bench``: ``fields`` with the 1-minute load average now."""
    return {"bench": bench, "load_avg_1m": load_avg(), **fields}


# --------------------------------------------------------------------------------------------- JSON lines
def json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


class JsonLines:
    """Where records go: each one JSON line on stdout and, with ``path``, appended to that file. ``records``
    holds them as read back from their line (numpy scalars, tuples and paths come back as JSON types). Every
    record gets ``meta`` (:func:`run_meta` of this run, unless given: e.g. that of the measurement a record is
    recomputed from) where it has none."""

    def __init__(self, path: str | Path | None = None, meta: dict[str, Any] | None = None):
        self.path, self.meta = path, meta if meta is not None else run_meta()
        self.records: list[dict[str, Any]] = []
        self._file: TextIO | None = None

    def __enter__(self) -> JsonLines:
        if self.path:
            self._file = open(self.path, "a")  # closed by __exit__
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def emit(self, rec: dict[str, Any]) -> dict[str, Any]:
        line = json.dumps({**rec, "meta": rec.get("meta", self.meta)}, default=json_default)
        print(line, flush=True)
        if self._file is not None:
            self._file.write(line + "\n")
            self._file.flush()
        self.records.append(json.loads(line))
        return self.records[-1]


def read_lines(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------- tables
def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    align: str = "",
    style: str = "plain",
    title: str | None = None,
) -> str:
    """A table of ``rows`` (cells as given, ``str()`` of them): ``style`` ``plain`` (aligned columns),
    ``markdown`` or ``rich``. ``align``: ``l`` or ``r`` per column (default: the first left, the rest right)."""
    align = (align or "l" + "r" * (len(headers) - 1)).ljust(len(headers), "r")
    cells = [[str(c) for c in row] for row in rows]
    render = {"plain": _plain, "markdown": _markdown, "rich": _rich}[style]
    return render([str(h) for h in headers], cells, align, title)


def _plain(headers: list[str], rows: list[list[str]], align: str, title: str | None) -> str:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align)).rstrip()

    head = line(headers)
    return "\n".join([*([title] if title else []), head, "-" * len(head), *map(line, rows)])


def _markdown(headers: list[str], rows: list[list[str]], align: str, title: str | None) -> str:
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(r) + " |" for r in (headers, rule, *rows)]
    return "\n".join([*([title, ""] if title else []), *lines])


def _rich(headers: list[str], rows: list[list[str]], align: str, title: str | None) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for h, a in zip(headers, align):
        table.add_column(h, justify="left" if a == "l" else "right")
    for r in rows:
        table.add_row(*r)
    buf = io.StringIO()
    width = sum(max(len(r[i]) for r in [headers, *rows]) + 3 for i in range(len(headers))) + 1
    Console(file=buf, width=max(80, width), color_system=None).print(table)
    return buf.getvalue().rstrip("\n")


def print_table(text: str, file: TextIO | None = None) -> None:
    """A table (or any report) for people: on stderr, stdout being the JSON lines."""
    print(text, file=file or sys.stderr, flush=True)


def cell(value: Any) -> str:
    """A JSON value for a table: floats to 4 significant digits, lists and objects as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), default=json_default)
    return str(value)


def pick(rec: Any, dotted: str) -> Any:
    """``rec["a"]["b"]`` for ``"a.b"`` (a key may hold dots itself: ``edge_recall.0.6``); None where missing."""
    parts = dotted.split(".")
    while parts:
        if not isinstance(rec, dict):
            return None
        i = next((i for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in rec), 0)
        if not i:
            return None
        rec, parts = rec[".".join(parts[:i])], parts[i:]
    return rec


def records_table(records: list[dict[str, Any]], columns: Sequence[str] = (), style: str = "plain") -> str:
    """A table of records: ``columns`` (dotted keys) or every top-level key but ``meta`` in first-seen order;
    columns of numbers aligned right."""
    cols = list(columns) or list(dict.fromkeys(k for r in records for k in r if k != "meta"))
    values = [[pick(r, c) for c in cols] for r in records]
    numeric = [all(isinstance(v[i], int | float) for v in values if v[i] is not None) for i in range(len(cols))]
    return format_table(
        cols, [[cell(x) for x in v] for v in values], "".join("r" if n else "l" for n in numeric), style
    )


def show(argv: list[str] | None = None) -> str:
    """The ``python -m benchmarks.common`` command: a table of a JSON-lines file."""
    p = argparse.ArgumentParser(description="A table of a benchmark's JSON lines.")
    p.add_argument("file", type=Path)
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep records whose (dotted) KEY prints as VALUE (repeatable)",
    )
    p.add_argument("--columns", default="", help="comma-separated dotted keys (default: every top-level key)")
    p.add_argument("--style", default="plain", choices=["plain", "markdown", "rich"])
    args = p.parse_args(argv)
    wanted = [w.split("=", 1) for w in args.where]
    if any(len(w) != 2 for w in wanted):
        p.error("--where takes KEY=VALUE")
    records = [r for r in read_lines(args.file) if all(cell(pick(r, k)) == v for k, v in wanted)]
    text = records_table(records, [c for c in args.columns.split(",") if c], args.style)
    print(text)
    return text


if __name__ == "__main__":
    show()
