"""How long ``make-retrieval --help`` (or another command, e.g. one ``search``) takes, and which
heavy libraries it imports.

Runs ``python -m make_retrieval.cli ARGS`` in fresh processes (alternating between the code
versions given, so both see the same machine load) and reports the median wall time and whether
torch, transformers or FAISS were imported (from ``-X importtime``). ``--code DIR`` puts another
checkout first on PYTHONPATH, e.g. a ``git worktree`` of an older commit:

    git worktree add /tmp/before 785d8f0
    python bench/cli_startup.py --runs 7 --code /tmp/before --code .
    python bench/cli_startup.py --runs 5 --code /tmp/before --code . -- search --index runs/demo/index "black heels"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("torch", "transformers", "faiss")


def one_run(code: Path, args: list[str]) -> tuple[float, list[str]]:
    """(seconds, heavy libraries imported) of one command in a fresh process."""
    # run from the checkout: ``-m`` puts the working directory first on sys.path, before PYTHONPATH
    env = {**os.environ, "PYTHONPATH": str(code.resolve())}
    command = [sys.executable, "-X", "importtime", "-m", "make_retrieval.cli", *args]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=code.resolve(), capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    return seconds, [name for name in HEAVY if name in imported]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", type=Path, action="append", help="checkout to time (repeatable)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("command", nargs="*", default=["--help"], help="the CLI arguments (after --)")
    args = parser.parse_args()
    command = [str(Path(a).resolve()) if Path(a).exists() else a for a in args.command]  # each runs from its checkout
    codes = args.code or [Path(".")]
    times: dict[Path, list[float]] = {code: [] for code in codes}
    heavy: dict[Path, list[str]] = {}
    for _ in range(args.runs):
        for code in codes:
            seconds, heavy[code] = one_run(code, command)
            times[code].append(seconds)
    for code in codes:
        report = {"code": str(code), "median_s": round(statistics.median(times[code]), 2), "heavy": heavy[code]}
        print(json.dumps(report))


if __name__ == "__main__":
    main()
