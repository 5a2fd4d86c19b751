"""Screenshots of the Temporal Web UI showing a rollout, for the docs.

    .venv/bin/python starter.py demo --keep     # in one shell (or `dev` and a `start`)
    .venv/bin/python scripts/ui_screenshot.py [--state DE] [--ui http://127.0.0.1:8233]

Needs Debian's chromium (`apt-get install chromium`); writes docs/webui-rollouts.png (the
rollout and its children found by RolloutStateCode) and docs/webui-state-rollouts.png (every
state rollout). (The workflow detail page keeps a long poll open and never settles for a
headless screenshot.)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Flags for a closed network: no background fetches, no first-run, no sandbox as root.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1440,900", "--virtual-time-budget=6000", "--timeout=20000",
]  # fmt: skip


def screenshot(url: str, target: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("error: chromium not found; install Debian's chromium package")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             f"--screenshot={target}", url],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    print(f"wrote {target.relative_to(ROOT)} ({url})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", default="DE")
    parser.add_argument("--ui", default="http://127.0.0.1:8233")
    parser.add_argument("--namespace", default="default")
    args = parser.parse_args()
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    base = f"{args.ui}/namespaces/{args.namespace}/workflows"
    query = urllib.parse.quote(f'RolloutStateCode="{args.state}"')
    screenshot(f"{base}?query={query}", docs / "webui-rollouts.png")
    paused = urllib.parse.quote('WorkflowType="StateRolloutWorkflow"')
    screenshot(f"{base}?query={paused}", docs / "webui-state-rollouts.png")


if __name__ == "__main__":
    main()
