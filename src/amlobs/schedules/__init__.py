"""Scheduled pipelines that did not run, or ran late (docs/reconciler.md, "Schedules").

* :mod:`.model`: an AML schedule (ARM ``workspaces/schedules``) or a declared expectation, parsed;
* :mod:`.fire_times`: when a trigger fires, in its own time zone (pure);
* :mod:`.judge`: a fire time against the jobs that ran: on time, late, missed, overdue (pure);
* :mod:`.step`: the reconciler's pass step that reads, judges and records each fire time once.
"""

from __future__ import annotations
