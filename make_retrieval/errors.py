"""The errors a user can cause, in one light module: the CLI turns each into a one-line message
(exit code 2) without importing torch, FAISS or transformers to know their types."""

from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """A config file or option that does not fit the dataclasses (unknown key, wrong type or value)."""


class DataError(ValueError):
    """A problem with the user's data, located by file, row (1-based) and field."""

    def __init__(self, file: Path | str, message: str, row: int | None = None, field: str | None = None):
        self.file, self.row, self.field = str(file), row, field
        where = self.file
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


class IndexFileError(ValueError):
    """An index folder that is incomplete, altered, or cannot be built or changed as asked."""


class CheckpointError(ValueError):
    """A checkpoint that does not fit its run's config, or an index built from another checkpoint."""


#: What the CLI reports as one line instead of a traceback.
USER_ERRORS = (ConfigError, DataError, IndexFileError, CheckpointError, FileNotFoundError)
