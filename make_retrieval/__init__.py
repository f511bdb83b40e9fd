"""make-retrieval: text-to-multimodal product retrieval with MAKE (Modal Adaptation, Keyword Enhancement).

The public Python API is the names in ``__all__`` (README, "Python API"); every other module is the
package's own and may change. The names load on first use, so that ``import make_retrieval`` (and
the CLI, and ``search`` with the ONNX encoder) does not import torch. Importing the package changes
nothing in the environment: every model is loaded from a local folder with ``local_files_only``,
and the CLI sets ``HF_HUB_OFFLINE`` for what it runs.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("make-retrieval")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

#: Public name -> the module that defines it.
_PUBLIC = {
    "MAKE": "make_retrieval.api",
    "Embeddings": "make_retrieval.api",
    "Index": "make_retrieval.retrieval",
    "QueryResult": "make_retrieval.retrieval",
    "SearchHit": "make_retrieval.retrieval",
    "Config": "make_retrieval.config",
}
__all__ = ["MAKE", "Config", "Embeddings", "Index", "QueryResult", "SearchHit", "__version__"]

if TYPE_CHECKING:
    from make_retrieval.api import MAKE, Embeddings
    from make_retrieval.config import Config
    from make_retrieval.retrieval import Index, QueryResult, SearchHit


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562)."""
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'make_retrieval' has no attribute '{name}'")
