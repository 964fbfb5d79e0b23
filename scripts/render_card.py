#!/usr/bin/env python3
"""Draws the Teams message of a failed pipeline run: docs/images/teams-card.png.

Teams itself cannot run on a build machine. What this draws is the real message: an SDK v2 pipeline
whose failing node sits in a nested sub-pipeline (tests/trace_scenario.py, the error of a recorded failed
run) is served by the project's AML fake, its events go through ``function_app`` against the loopback
fakes, and the Adaptive Card a loopback Teams Workflows webhook accepted (tests/fakes/webhook_sink.py,
schema-checked) is rendered by Microsoft's own Adaptive Cards JavaScript renderer (npm ``adaptivecards``
3.0.6, MIT, installed by scripts/test.sh) in headless Chromium, with a light host config written here
after Teams' look (fonts, colours, spacing). Teams' own host config differs in detail; the card's content,
order and actions are the ones Teams receives.

Usage: .venv/bin/python scripts/render_card.py [--png docs/images/teams-card.png] [--json FILE]
Needs the test dependencies (scripts/test.sh) and Chromium (Debian: apt-get install chromium).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RENDERER = REPO / "tests" / "tools" / "node_modules" / "adaptivecards" / "dist" / "adaptivecards.min.js"
WIDTH, HEIGHT = 940, 500
# An Adaptive Cards host config (the renderer's documented HostConfig JSON) approximating Teams' light theme.
HOST_CONFIG: dict[str, Any] = {
    "fontFamily": "'Segoe UI', system-ui, -apple-system, Helvetica, Arial, sans-serif",
    "spacing": {"small": 4, "default": 8, "medium": 16, "large": 20, "extraLarge": 24, "padding": 16},
    "fontSizes": {"small": 12, "default": 14, "medium": 14, "large": 18, "extraLarge": 24},
    "fontWeights": {"lighter": 300, "default": 400, "bolder": 600},
    "containerStyles": {
        "default": {"backgroundColor": "#FFFFFF", "foregroundColors": {
            "default": {"default": "#242424", "subtle": "#616161"},
            "attention": {"default": "#C4314B", "subtle": "#C4314B"},
            "warning": {"default": "#835C00", "subtle": "#835C00"},
            "accent": {"default": "#5B5FC7", "subtle": "#5B5FC7"},
            "good": {"default": "#237B4B", "subtle": "#237B4B"}}},
        "attention": {"backgroundColor": "#FCF4F6", "foregroundColors": {
            "default": {"default": "#242424", "subtle": "#616161"},
            "attention": {"default": "#C4314B", "subtle": "#C4314B"},
            "warning": {"default": "#835C00", "subtle": "#835C00"},
            "accent": {"default": "#5B5FC7", "subtle": "#5B5FC7"},
            "good": {"default": "#237B4B", "subtle": "#237B4B"}}},
        "warning": {"backgroundColor": "#FBF6D9", "foregroundColors": {
            "default": {"default": "#242424", "subtle": "#616161"},
            "warning": {"default": "#835C00", "subtle": "#835C00"}}},
    },
    "actions": {"maxActions": 6, "buttonSpacing": 8, "showCard": {"actionMode": "inline"},
                "actionsOrientation": "horizontal", "actionAlignment": "left", "spacing": "default"},
    "factSet": {"title": {"weight": "bolder", "wrap": True, "maxWidth": 190}, "value": {"wrap": True},
                "spacing": 10},
}  # fmt: skip


def recorded_card() -> dict[str, Any]:
    """Run the scenario through the function; the card the Teams sink accepted."""
    sys.path[:0] = [str(REPO / "src"), str(REPO)]
    from amlobs import runtime
    from tests.fakes.aml_api import start_aml_api
    from tests.fakes.azurite import start_azurite
    from tests.fakes.ingestion import IngestionServer
    from tests.fakes.webhook_sink import card_errors, webhook_sink
    from tests.integration.host import invoke
    from tests.trace_scenario import run_event, v2_pipeline

    with start_aml_api() as aml, start_azurite() as azurite, webhook_sink("teams") as teams:
        ingestion = IngestionServer().start()
        try:
            os.environ.update(aml.env())
            os.environ.update(
                {
                    "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string,
                    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD;ClientId="
                    + aml.client_id,
                    "AzureWebJobsStorage": azurite.connection_string,
                    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
                    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
                    "AML_OBS_NOTIFY_WEBHOOK_URL": teams.url,
                    "AML_OBS_NOTIFY_FORMAT": "teams",
                    "AML_OBS_APPINSIGHTS_RESOURCE_ID": "/subscriptions/"
                    + aml.workspace().subscription_id
                    + "/resourceGroups/rg-aml-obs/providers/microsoft.insights/components/appi-aml-obs",
                }
            )
            os.environ.pop("AML_OBS_API_ENDPOINT", None)
            runtime.reset_processor()
            pipeline = v2_pipeline(
                aml.workspace(), end=datetime.now(UTC) - timedelta(minutes=3), failed_node=True
            )
            invoke(run_event(aml.workspace(), pipeline.root, pipeline.root["status"]))
            runtime.reset_processor()
            [message] = teams.messages
        finally:
            ingestion.close()
    card: dict[str, Any] = message["attachments"][0]["content"]
    assert card_errors(card) == [], card_errors(card)
    return card


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    sys.exit("Chromium is needed (Debian: apt-get install chromium)")


def page(card: dict[str, Any]) -> str:
    if not RENDERER.is_file():
        sys.exit(f"{RENDERER} is missing: run scripts/test.sh once (it installs the npm test tools)")
    return f"""<!doctype html><html><head><meta charset="utf-8">
<style>
  body {{ margin: 0; background: #F5F5F5; font-family: 'Segoe UI', system-ui, sans-serif; }}
  .post {{ margin: 20px; background: #fff; border-radius: 6px; width: 900px;
           box-shadow: 0 1px 3px rgba(0,0,0,.18); }}
  .who {{ padding: 12px 16px 0; color: #616161; font-size: 12px; }}
  .who b {{ color: #242424; font-size: 14px; }}
  .ac-pushButton {{ border: 1px solid #D1D1D1; border-radius: 4px; background: #fff; color: #242424;
                    padding: 6px 12px; font: 600 13px 'Segoe UI', sans-serif; }}
</style>
<script>{RENDERER.read_text(encoding="utf-8")}</script></head><body>
<div class="post"><div class="who"><b>Workflows</b>
  &nbsp;via "Post to a channel when a webhook request is received"</div>
<div id="card"></div></div>
<script>
  const card = new AdaptiveCards.AdaptiveCard();
  card.hostConfig = new AdaptiveCards.HostConfig({json.dumps(HOST_CONFIG)});
  card.parse({json.dumps(card)});
  document.getElementById("card").appendChild(card.render());
</script></body></html>"""


def screenshot(html: str, png: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "card.html"
        source.write_text(html, encoding="utf-8")
        png.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(  # noqa: S603 (fixed argv)
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             "--virtual-time-budget=3000", f"--user-data-dir={tmp}/profile",
             f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={png}", source.as_uri()],
            capture_output=True, check=True, timeout=120,
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--png", type=Path, default=REPO / "docs" / "images" / "teams-card.png")
    parser.add_argument("--json", type=Path, help="also keep the card's JSON here")
    args = parser.parse_args()
    card = recorded_card()
    if args.json:
        args.json.write_text(json.dumps(card, indent=2), encoding="utf-8")
    screenshot(page(card), args.png.resolve())
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
