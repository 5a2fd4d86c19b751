"""Phase 1 payloads: what CommunityDiscoveryWorkflow and its activities exchange (searches,
plans, carries, requests and outcomes: ids, boxes and counts, never places)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from rollout.payloads import PhaseInput, RetrySpec, default_places_retry


class DiscoveryStrategy(StrEnum):
    """How phase 1 pays for what it finds.

    - cover (default): walk every search and quadtree cell with the free IDs-only mask
      first, keeping the ids in Postgres, then buy a near-cheapest set cover of the probed
      pages (rollout/phases/discovery/cover.py): each business is paid about once,
      categories overlapping or not;
    - stream: pay each search as it is walked (probed cells are paid again at their
      leaves); simpler, about twice the cost in cities (bench/discovery_coverage.py).
    """

    COVER = "cover"
    STREAM = "stream"


class SearchKind(StrEnum):
    TEXT = "text"
    NEARBY = "nearby"


class Box(BaseModel):
    """A latitude/longitude rectangle (never crosses the antimeridian in the US)."""

    model_config = ConfigDict(frozen=True)

    south: float
    west: float
    north: float
    east: float

    @property
    def height_deg(self) -> float:
        return self.north - self.south

    def split(self) -> list[Box]:
        mid_lat = (self.south + self.north) / 2
        mid_lng = (self.west + self.east) / 2
        return [
            Box(south=self.south, west=self.west, north=mid_lat, east=mid_lng),
            Box(south=self.south, west=mid_lng, north=mid_lat, east=self.east),
            Box(south=mid_lat, west=self.west, north=self.north, east=mid_lng),
            Box(south=mid_lat, west=mid_lng, north=self.north, east=self.east),
        ]

    def contains(self, lat: float, lng: float) -> bool:
        return self.south <= lat <= self.north and self.west <= lng <= self.east


class SearchTask(BaseModel):
    """One search stream: a query over an area, paged to the end by the workflow."""

    model_config = ConfigDict(frozen=True)

    kind: SearchKind
    label: str  # the category or query, for logs and the UI
    text_query: str | None = None
    included_type: str | None = None
    box: Box | None = None  # Text Search restriction
    center_lat: float | None = None  # Nearby Search circle
    center_lng: float | None = None
    radius_m: float | None = None
    depth: int = 0
    probe: bool = False  # IDs-only exploration (free); leaves are searched again, paid
    # includePureServiceAreaBusinesses (Text Search only): plumbers, cleaners, caterers who
    # serve customers at their door and have no storefront; Google returns them without an
    # address or location.
    service_area: bool = False

    @property
    def key(self) -> str:
        where = (
            f"{self.box.south:.5f},{self.box.west:.5f},{self.box.north:.5f},{self.box.east:.5f}"
            if self.box
            else f"{self.center_lat:.5f},{self.center_lng:.5f},{self.radius_m:.0f}"
        )
        return f"{self.kind.value}:{self.label}:{where}:{'probe' if self.probe else 'paid'}"


class CoverageRules(BaseModel):
    """The settings a workflow needs to expand the frontier deterministically (they come
    from the worker's settings through the plan activity, never read in a workflow)."""

    model_config = ConfigDict(frozen=True)

    min_cell_deg: float
    probe_cells: bool
    # Histories recorded before the cover strategy existed carry no strategy: stream.
    strategy: DiscoveryStrategy = DiscoveryStrategy.STREAM


class DiscoveryPlan(BaseModel):
    region_id: int
    root_box: Box
    rules: CoverageRules
    tasks: list[SearchTask]


class DiscoveryCarry(BaseModel):
    frontier: list[SearchTask]
    requests: int = 0
    cost_usd: Decimal = Decimal(0)
    businesses: int = 0  # new to the community's region so far
    runs: int = 1
    # cover strategy: the exploration's key, and once planned, the purchases left
    run_key: str | None = None
    purchases: int | None = None  # lines of the purchase list (None: still exploring)
    next_purchase: int = 0
    # The list's first `purchase_searches` lines are searches, the rest Place Details (None:
    # a carry from before it was kept).
    purchase_searches: int | None = None


class DiscoveryInput(BaseModel):
    """Input of CommunityDiscoveryWorkflow (phase 1)."""

    phase: PhaseInput
    places_retry: RetrySpec = Field(default_factory=default_places_retry)
    plan: DiscoveryPlan | None = None  # set by continue-as-new, with carry
    carry: DiscoveryCarry | None = None
    # Search streams of one community running at once. Many, so that the requests' answers
    # come back close together and one workflow task takes several (fewer workflow tasks
    # and history events per request); the quota is the task queues' business.
    streams: int = 16
    continue_as_new_after_events: int | None = None  # test hook


class PageRequest(BaseModel):
    task: SearchTask
    page_token: str | None = None
    page_number: int = 1
    community_rollout_id: int
    community_id: int
    region_id: int
    throttle_ms: int = 0
    run_key: str | None = None  # cover strategy: keep the page's ids under this key


class PurchaseListRequest(BaseModel):
    run_key: str
    community_rollout_id: int


class PurchaseList(BaseModel):
    """What the planned purchase list holds (the lines themselves stay in Postgres)."""

    # Numbered 0..lines-1: the searches first, then the Place Details (a line's number says
    # which Places method buys it, and so the queue it goes to).
    lines: int
    searches: int
    pages: int
    details: int
    sighted: int  # distinct ids the exploration saw
    cost_usd: Decimal  # list price of the plan
    known: int = 0  # sighted ids fetched within DISCOVERY_FRESH_DAYS: linked, not bought


class BuyRequest(BaseModel):
    run_key: str
    seq: int
    page_number: int = 1
    page_token: str | None = None
    community_rollout_id: int
    community_id: int
    region_id: int
    throttle_ms: int = 0


class PageOutcome(BaseModel):
    result_count: int
    next_page_token: str | None = None
    new_in_region: int = 0
    sku: str
    cost_usd: Decimal
