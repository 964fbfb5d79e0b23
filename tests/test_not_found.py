"""A run history 404 judged by the event's age (amlobs.not_found), and its setting."""

from __future__ import annotations

import pytest

from amlobs.not_found import NotFoundRule
from amlobs.settings import Settings, SettingsError

NOW_MS = 1_796_000_000_000
MIN_MS = 60_000


@pytest.mark.parametrize(
    ("age_ms", "transient", "said"),
    [
        (0, True, "0 s old, younger than 15 min"),
        (14 * MIN_MS + 59_999, True, "14 min old, younger than 15 min"),
        (15 * MIN_MS, False, "15 min old (a 404 within 15 min of the event is retried)"),
        (3 * 3_600_000 + 5 * MIN_MS, False, "3 h 5 min old"),
        (-30_000, True, "0 s old"),  # an event stamped ahead of this clock is recent, not old
    ],
)
def test_a_404_is_transient_only_for_a_recent_event(age_ms: int, transient: bool, said: str) -> None:
    verdict = NotFoundRule().judge(NOW_MS - age_ms, NOW_MS, "HTTP 404 (RunNotFound)")
    assert verdict.transient is transient
    assert said in verdict.reason and verdict.reason.endswith("(HTTP 404 (RunNotFound))")
    assert verdict.age_ms == age_ms


def test_an_event_without_a_time_is_judged_old_and_says_so() -> None:
    verdict = NotFoundRule().judge(None, NOW_MS, "404")
    assert not verdict.transient and verdict.age_ms is None
    assert "of unknown age (the event has no readable eventTime)" in verdict.reason


def test_the_grace_period_is_a_setting_in_minutes() -> None:
    assert Settings.from_env({}).run_not_found_grace_minutes == 15.0
    settings = Settings.from_env({"AML_OBS_RUN_NOT_FOUND_GRACE_MINUTES": "2.5"})
    assert settings.run_not_found_grace_minutes == 2.5
    assert (
        NotFoundRule(60 * settings.run_not_found_grace_minutes).judge(NOW_MS - 149_000, NOW_MS, "x").transient
    )
    for bad in ("0", "-1", "soon", "nan"):
        with pytest.raises(SettingsError, match="AML_OBS_RUN_NOT_FOUND_GRACE_MINUTES"):
            Settings.from_env({"AML_OBS_RUN_NOT_FOUND_GRACE_MINUTES": bad})
