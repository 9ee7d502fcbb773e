"""A small reader of ``.env`` files (``KEY=value`` lines), enough for the ``DAP_*`` settings.

No dependency: the format is the common subset that python-dotenv and docker agree on.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["read_dotenv"]

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        inner = raw[1:-1]
        # Double quotes take the usual escapes; single quotes are literal.
        return inner.replace('\\"', '"').replace("\\n", "\n") if raw[0] == '"' else inner
    # Unquoted: a " #" starts a comment.
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()


def read_dotenv(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read ``KEY=value`` pairs from a ``.env`` file; an absent file gives ``{}``.

    Blank lines and ``#`` comments are skipped, ``export KEY=value`` is accepted, and values
    may be single- or double-quoted. Nothing is put into ``os.environ``: the secret stays out
    of the environment of processes the notebook starts.

    Parameters
    ----------
    path : path
        The file, e.g. ``.env`` in the notebook's folder.

    Returns
    -------
    dict
        The pairs in file order (a repeated key keeps its last value).
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match:
            values[match.group(1)] = _unquote(match.group(2))
    return values
