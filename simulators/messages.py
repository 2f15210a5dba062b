"""One-line error messages: the package reports bad input in one line naming what is
wrong, and quotes other libraries' errors (h5py, torch, json) by their first line."""

from __future__ import annotations

__all__ = ["first_line"]


def first_line(error: BaseException, default: str | None = None,
               limit: int | None = 200) -> str:
    """The first line of ``error``'s message, at most ``limit`` characters (``None``: no
    limit); ``default`` (or the error's type name) when the message is empty."""
    text = str(error).strip()
    if not text:
        return default if default is not None else type(error).__name__
    line = text.splitlines()[0]
    return line if limit is None else line[:limit]
