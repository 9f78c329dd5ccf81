"""Checks the workflows run before any long work, so that a run cannot fail at its end for a reason known
at its start: the destination can be written, the model's layers can be reduced.

Each check takes a `label`, the name the message gives the value (a Python argument, or the flag the
user typed: "--out"), and raises ValueError of one line.
"""
from __future__ import annotations

import os
import tempfile


def writable_dir(path, label: str) -> str:
    """`path` is, or can be created as, a folder we can write in: its nearest existing ancestor is a folder
    in which a temporary file can be made (probed, not guessed from permission bits: root, read-only
    mounts and /proc all answer differently). Creates nothing that stays. Returns path."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"{label} must be a folder path, got {path!r}")
    path = os.fspath(path)
    existing = os.path.abspath(path)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        what = "is" if existing == os.path.abspath(path) else f"is inside {existing!r}, which is"
        raise ValueError(f"{label} {path!r} {what} not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ValueError(f"{label} {path!r}: cannot write in {existing!r} ({e.strerror or e})") from None
    return path


def writable_file(path, label: str) -> str:
    """`path` names a file that can be written (created, or replaced): not a folder, in a folder that
    writable_dir accepts. Returns path."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"{label} must be a file path, got {path!r}")
    path = os.fspath(path)
    if os.path.isdir(path) or path.endswith(os.sep):
        raise ValueError(f"{label} {path!r} is a folder; give a file path")
    writable_dir(os.path.dirname(os.path.abspath(path)), f"{label} {path!r}: its folder")
    return path


def unreducible_reason(layer) -> str | None:
    """Why reduce_model cannot reduce `layer`, or None if it can. reduce_model reads a layer through the
    protocol modal_form() / with_modal_form() (dssm_kernels.reduction.system); reduction.from_layer asks
    the first (and says why not), the second must exist to hold the result."""
    from dssm_kernels import reduction as R
    try:
        R.from_layer(layer)
    except TypeError as e:
        return str(e)
    if not callable(getattr(layer, "with_modal_form", None)):
        return f"{type(layer).__name__} has no with_modal_form() to hold a reduced system"
    return None
