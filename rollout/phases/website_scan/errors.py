"""Outcome words of a website scan (website_scans.status) and the fetch error carrying them."""

from __future__ import annotations

from enum import StrEnum


class ScanStatus(StrEnum):
    OK = "ok"  # an HTML homepage was read and searched
    TOO_LARGE = "too_large"  # the page exceeded the size cap; its first part was searched
    NOT_HTML = "not_html"  # a 2xx answer that is not HTML (and not a feed)
    HTTP_ERROR = "http_error"  # the final answer was 4xx/5xx
    TIMEOUT = "timeout"  # a timeout or the per-site deadline
    UNREACHABLE = "unreachable"  # DNS failure, connection refused
    BROKEN = "broken"  # the server broke the connection or spoke invalid HTTP
    BLOCKED = "blocked"  # refused by the SSRF guard (private, loopback, metadata, ...)
    ROBOTS_DISALLOWED = "robots_disallowed"  # robots.txt disallows us
    REDIRECT_LOOP = "redirect_loop"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    INVALID_URL = "invalid_url"
    ERROR = "error"  # anything else (a bug); the message says what


# Statuses that mean "the website could not be reached" for the verification report.
UNREACHABLE_STATUSES = frozenset(
    {
        ScanStatus.HTTP_ERROR,
        ScanStatus.TIMEOUT,
        ScanStatus.UNREACHABLE,
        ScanStatus.BROKEN,
        ScanStatus.REDIRECT_LOOP,
        ScanStatus.TOO_MANY_REDIRECTS,
        ScanStatus.ERROR,
    }
)


class FetchError(Exception):
    def __init__(
        self,
        status: ScanStatus,
        message: str,
        *,
        http_status: int | None = None,
        final_url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.http_status = http_status
        self.final_url = final_url

    def __repr__(self) -> str:
        return f"FetchError({self.status.value!r}, {self.message!r})"


_CONTROL = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])


def clean_text(value: str) -> str:
    """Text from a website, made storable: Postgres text and JSONB refuse NUL, and other
    control characters are noise in a report."""
    return value.translate(_CONTROL)


def clean_json(value: object) -> object:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value
