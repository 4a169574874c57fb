"""Guard predicates shared by the engine and operator commands (pure)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence


def namespace_denied(ns: str, allowed: Sequence[str] | None, protected: Sequence[str]) -> bool:
    """True when ``ns`` is outside ``allowed`` (globs) or is protected.

    A protected namespace (kube-system, ...) is allowed only when the allow-list
    names it literally: a glob like ``*`` never opens it.
    """
    if allowed is not None and not any(fnmatch.fnmatchcase(ns, g) for g in allowed):
        return True
    if any(fnmatch.fnmatchcase(ns, g) for g in protected):
        return allowed is None or ns not in allowed
    return False
