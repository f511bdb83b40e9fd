"""What every ``make-retrieval`` command shares: the consoles, the option types, and the wrapper that
turns a data, config or missing-file error into one line and exit code 2 (``cli.py`` registers the
training and evaluation commands, ``cli_index.py`` the index and search ones)."""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Callable
from enum import Enum
from typing import Annotated, ParamSpec

import typer
from rich.console import Console
from rich.markup import escape

from make_retrieval.config import INDEX_KINDS, QUERY_ENCODERS
from make_retrieval.errors import USER_ERRORS, ConfigError

# Tables stay readable when output is piped (rich would assume 80 columns).
console = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
P = ParamSpec("P")
IndexKind = Enum("IndexKind", {kind: kind for kind in INDEX_KINDS}, type=str)  # type: ignore[misc]
Encoder = Enum("Encoder", {name: name for name in QUERY_ENCODERS}, type=str)  # type: ignore[misc]
Split = Enum("Split", {"valid": "valid", "test": "test"}, type=str)  # type: ignore[misc]
#: Search modes (retrieval.MODES; not imported from there, which would load numpy for ``--help``).
Mode = Enum("Mode", {name: name for name in ("dense", "lexical", "hybrid")}, type=str)  # type: ignore[misc]
#: ``index.fusion`` values (hybrid.py checks them again for YAML configs).
Fusion = Enum("Fusion", {name: name for name in ("auto", "weighted", "rrf")}, type=str)  # type: ignore[misc]

SkipBadRows = Annotated[
    bool, typer.Option("--skip-bad-rows", help="Skip rows that break the format (counted and reported).")
]


def fail_on_data_errors(func: Callable[P, None]) -> Callable[P, None]:
    """Turn data, config and missing-file errors into a one-line message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            func(*args, **kwargs)
        except USER_ERRORS as error:
            err.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from error

    return wrapper


def needs(extra: str, *modules: str) -> None:
    """A clear error when a command's optional dependencies (an extra) are not installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"this command needs {', '.join(missing)}: pip install 'make-retrieval[{extra}]'")
