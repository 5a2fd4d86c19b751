"""Screenshots of the Temporal Web UI showing a rollout, for the docs.

    .venv/bin/python starter.py demo --keep     # in one shell (or `dev` and a `start`)
    .venv/bin/python scripts/ui_screenshot.py [--state DE] [--ui http://127.0.0.1:8233]

Needs Debian's chromium (`apt-get install chromium`); writes docs/webui-rollouts.png (the
rollout and its children found by RolloutStateCode) and docs/webui-state-rollouts.png (every
state rollout) and docs/webui-rollout-detail.png (the state rollout's own page: its summary,
live details and timeline).

The detail page keeps a long poll open, so Chromium's virtual-time budget never runs out on
it, and without one `--screenshot` fires on the load event, before the page has drawn
anything. It is therefore framed by a page of our own, served on loopback, whose load event
waits for an image that arrives `--settle-s` seconds later: the screenshot is taken then.
"""

from __future__ import annotations

import argparse
import html
import http.client
import http.server
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Flags for a closed network: no background fetches, no first-run, no sandbox as root.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1440,900", "--virtual-time-budget=6000", "--timeout=20000",
]  # fmt: skip


def screenshot(url: str, target: Path, flags: list[str] | None = None) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("error: chromium not found; install Debian's chromium package")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, *(flags or CHROMIUM_FLAGS), f"--user-data-dir={profile}",
             f"--screenshot={target}", url],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    print(f"wrote {target.relative_to(ROOT)} ({url})")


def screenshot_settled(url: str, target: Path, settle_s: float) -> None:
    """A page that never settles, shot `settle_s` seconds after it started loading.

    The UI forbids framing by other origins (X-Frame-Options: SAMEORIGIN), so a loopback
    proxy serves the UI and the frame page from one origin."""
    upstream = urllib.parse.urlsplit(url)
    frame = (
        "<!doctype html><body style='margin:0'>"
        f"<iframe src='{html.escape(upstream.path)}' "
        "style='border:0;width:1440px;height:900px'></iframe>"
        "<img src='/__late.gif' style='display:none'></body>"
    ).encode()
    gif = bytes.fromhex(
        "47494638396101000100800000000000ffffff21f90401000000002c000000000100010000020144003b"
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _proxy(self) -> None:
            if self.path == "/__frame":
                return self._reply(200, [("Content-Type", "text/html")], frame)
            if self.path == "/__late.gif":
                time.sleep(settle_s)
                return self._reply(200, [("Content-Type", "image/gif")], gif)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            conn = http.client.HTTPConnection(upstream.netloc, timeout=settle_s + 60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in HOP]
                return self._reply(answer.status, kept, data)
            except OSError:
                return None  # the browser went away while a long poll was open
            finally:
                conn.close()

        do_GET = do_POST = _proxy

        def log_message(self, *_: object) -> None:
            pass

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        flags = [f for f in CHROMIUM_FLAGS if not f.startswith(("--virtual-time", "--timeout"))]
        timeout_ms = int((settle_s + 30) * 1000)
        screenshot(f"http://127.0.0.1:{port}/__frame", target, [*flags, f"--timeout={timeout_ms}"])
    finally:
        server.shutdown()
        server.server_close()


# Hop-by-hop headers, and the framing guard the proxy lifts for its own frame page.
HOP = {
    "connection", "keep-alive", "transfer-encoding", "content-length", "upgrade",
    "proxy-connection", "te", "trailer", "x-frame-options", "content-encoding",
    "accept-encoding",
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", default="DE")
    parser.add_argument("--ui", default="http://127.0.0.1:8233")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--settle-s", type=float, default=8.0, help="detail page load time")
    args = parser.parse_args()
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    base = f"{args.ui}/namespaces/{args.namespace}/workflows"
    query = urllib.parse.quote(f'RolloutStateCode="{args.state}"')
    screenshot(f"{base}?query={query}", docs / "webui-rollouts.png")
    paused = urllib.parse.quote('WorkflowType="StateRolloutWorkflow"')
    screenshot(f"{base}?query={paused}", docs / "webui-state-rollouts.png")
    detail = f"{base}/{urllib.parse.quote(f'state-rollout-{args.state}')}"
    screenshot_settled(detail, docs / "webui-rollout-detail.png", args.settle_s)


if __name__ == "__main__":
    main()
