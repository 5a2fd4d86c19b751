"""Places API (New): async client, typed models and errors, field-mask pricing.

No Temporal imports here: activities wrap this package, workflows never see it.
"""

from rollout.places.client import (
    GOOGLE_BASE_URL,
    MAX_PAGE_SIZE,
    TEXT_SEARCH_MAX_RESULTS,
    NearbyRankPreference,
    PlacesClient,
    TextRankPreference,
)
from rollout.places.errors import (
    InvalidRequestError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    PermissionProblem,
    PlacesConnectionError,
    PlacesError,
    PlacesTimeoutError,
    QuotaExceededError,
    ServerError,
)
from rollout.places.models import (
    BusinessStatus,
    Circle,
    DetailsResult,
    LatLng,
    Place,
    Rectangle,
    SearchPage,
)
from rollout.places.pricing import (
    EmptyFieldMaskError,
    Endpoint,
    FieldMaskError,
    UnknownFieldError,
    free_monthly_cap,
    monthly_cost,
    price_list,
    request_cost,
    sku_for,
)

__all__ = [
    "GOOGLE_BASE_URL",
    "MAX_PAGE_SIZE",
    "TEXT_SEARCH_MAX_RESULTS",
    "BusinessStatus",
    "Circle",
    "DetailsResult",
    "EmptyFieldMaskError",
    "Endpoint",
    "FieldMaskError",
    "InvalidRequestError",
    "LatLng",
    "MalformedResponseError",
    "NearbyRankPreference",
    "NotFoundError",
    "PermissionDeniedError",
    "PermissionProblem",
    "Place",
    "PlacesClient",
    "PlacesConnectionError",
    "PlacesError",
    "PlacesTimeoutError",
    "QuotaExceededError",
    "Rectangle",
    "SearchPage",
    "ServerError",
    "TextRankPreference",
    "UnknownFieldError",
    "free_monthly_cap",
    "monthly_cost",
    "price_list",
    "request_cost",
    "sku_for",
]
