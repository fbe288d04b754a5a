"""Loading a user's host policy given as ``module:Class`` (the ``--host`` option)."""

from __future__ import annotations

import importlib
import os
import sys


class HostClassError(Exception):
    """A --host value that cannot be used; the message is one line."""


def load_host_class(spec: str) -> type:
    """Import ``module:Class``; the current directory is importable, as with ``python -m``."""
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise HostClassError(f"--host {spec!r}: expected MODULE:CLASS, e.g. myhosts:CarefulHost")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        first_line = (str(exc).splitlines() or [""])[0]
        message = f"--host {spec}: cannot import {module_name}: {type(exc).__name__}: {first_line}"
        raise HostClassError(message) from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise HostClassError(f"--host {spec}: {module_name} has no class {class_name}")
    for method in ("boot", "teardown", "recover"):
        if not callable(getattr(cls, method, None)):
            raise HostClassError(f"--host {spec}: {class_name} has no {method}() (subclass ReferenceHost)")
    return cls
