"""Website scanning (phase 2): SSRF guard, robots.txt, bounded fetcher, HTML discovery,
feed parsing. No Temporal imports: activities/website_scan.py wraps it."""

from rollout.phases.website_scan.errors import UNREACHABLE_STATUSES, FetchError, ScanStatus
from rollout.phases.website_scan.fetcher import FetchResult, WebFetcher
from rollout.phases.website_scan.scanner import ScanOutcome, scan_site
from rollout.phases.website_scan.ssrf import AddressPolicy, BlockedAddressError, blocked_reason

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
