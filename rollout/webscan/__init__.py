"""Website scanning (phase 2): SSRF guard, robots.txt, bounded fetcher, HTML discovery,
feed parsing. No Temporal imports: activities/website_scan.py wraps it."""

from rollout.webscan.errors import UNREACHABLE_STATUSES, FetchError, ScanStatus
from rollout.webscan.fetcher import FetchResult, WebFetcher
from rollout.webscan.scanner import ScanOutcome, scan_site
from rollout.webscan.ssrf import AddressPolicy, BlockedAddressError, blocked_reason

__all__ = [
    "UNREACHABLE_STATUSES",
    "AddressPolicy",
    "BlockedAddressError",
    "FetchError",
    "FetchResult",
    "ScanOutcome",
    "ScanStatus",
    "WebFetcher",
    "blocked_reason",
    "scan_site",
]
