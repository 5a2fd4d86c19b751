"""Opaque Text Search page tokens, bound to the request that produced them.

Google: "all parameters other than page_token, page_size, and max_result_count provided to
TextSearch must match the initial call that provided the page token. Otherwise an
INVALID_ARGUMENT error is returned." A token here carries the offset of the next page and a
digest of those parameters, under a MAC keyed by the seed, so it cannot be forged, edited, or
used with other parameters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

UNBOUND_PARAMETERS = frozenset({"pageToken", "pageSize", "maxResultCount"})
_VERSION = 1


def parameters_digest(body: dict[str, Any]) -> bytes:
    bound = {k: v for k, v in body.items() if k not in UNBOUND_PARAMETERS}
    canonical = json.dumps(bound, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).digest()[:16]


class PageTokens:
    def __init__(self, seed: int) -> None:
        self._key = hashlib.sha256(f"placesim-page-tokens:{seed}".encode()).digest()

    def issue(self, body: dict[str, Any], offset: int) -> str:
        payload = bytes([_VERSION, offset]) + parameters_digest(body)
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")

    def open(self, token: str, body: dict[str, Any]) -> int | None:
        """The offset the token points at, or None if it is not valid for this request."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError:
            return None
        if len(raw) != 30 or raw[0] != _VERSION:
            return None
        payload, mac = raw[:18], raw[18:]
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:12]
        if not hmac.compare_digest(mac, expected):
            return None
        if not hmac.compare_digest(payload[2:], parameters_digest(body)):
            return None
        return payload[1]
