"""A run history 404 as a question of age: transient for a recent event, "deleted" only for an old one."""

from __future__ import annotations

from .rule import DEFAULT_GRACE_SECONDS, NotFoundRule, Verdict

__all__ = ["DEFAULT_GRACE_SECONDS", "NotFoundRule", "Verdict"]
