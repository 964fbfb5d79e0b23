"""A resend repeats the original: the telemetry of a run status is decided once and kept with its claim.

:mod:`.unit_codec` turns a :class:`~amlobs.telemetry_unit.TelemetryUnit` into compact bytes and back
(what ``amlobs.storage.kept_unit`` stores on the claim) and flags a resent copy as a possible duplicate.
"""

from __future__ import annotations

from .unit_codec import UnitNotKeepable, decode_unit, encode_unit, flag_duplicate

__all__ = ["UnitNotKeepable", "decode_unit", "encode_unit", "flag_duplicate"]
