"""Google's error bodies (google.rpc.Status JSON), shaped as places.googleapis.com sends them
(docs/places.md, Errors)."""

from __future__ import annotations

from typing import Any

SERVICE = "places.googleapis.com"
PROJECT_NUMBER = "123456789012"  # the emulated consumer project
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"

# Quota names per method: the Cloud Console's metric names (docs/places.md, Errors).
QUOTA_METRICS = {
    "searchText": "SearchTextRequest",
    "searchNearby": "SearchNearbyRequest",
    "getPlace": "GetPlaceRequest",
}


class ApiError(Exception):
    """An error answer: HTTP status, google.rpc.Status body, extra headers."""

    def __init__(
        self,
        code: int,
        status: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.details = details or []
        self.headers = headers or []

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def invalid_argument(message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", message)


def missing_field_mask() -> ApiError:
    return invalid_argument(
        "FieldMask is a required parameter. See https://cloud.google.com/apis/docs/system-"
        "parameters on how to provide it. As an example, you can set the header "
        "'X-Goog-FieldMask' to 'displayName' to ask for the display name of a place."
    )


def unknown_fields(paths: list[str]) -> ApiError:
    return invalid_argument(
        f"Error expanding 'fields' parameter. Cannot find matching fields for path '{paths[0]}'."
    )


def api_key_invalid() -> ApiError:
    message = "API key not valid. Please pass a valid API key."
    return ApiError(
        400,
        "INVALID_ARGUMENT",
        message,
        [
            {
                "@type": _ERROR_INFO,
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": SERVICE},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": message,
            },
        ],
    )


def api_key_missing() -> ApiError:
    return ApiError(
        403,
        "PERMISSION_DENIED",
        "The request is missing a valid API key.",
    )


def service_disabled() -> ApiError:
    url = f"https://console.developers.google.com/apis/api/{SERVICE}/overview?project={PROJECT_NUMBER}"
    return ApiError(
        403,
        "PERMISSION_DENIED",
        f"Places API (New) has not been used in project {PROJECT_NUMBER} before or it is "
        f"disabled. Enable it by visiting {url} then retry. If you enabled this API recently, "
        "wait a few minutes for the action to propagate to our systems and retry.",
        [
            {
                "@type": _ERROR_INFO,
                "reason": "SERVICE_DISABLED",
                "domain": "googleapis.com",
                "metadata": {
                    "service": SERVICE,
                    "consumer": f"projects/{PROJECT_NUMBER}",
                    "activationUrl": url,
                    "serviceTitle": "Places API (New)",
                },
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [{"description": "Google developers console API activation", "url": url}],
            },
        ],
    )


def quota_exceeded(
    method: str, *, per_day: bool, limit: int, retry_after_s: int | None
) -> ApiError:
    metric = QUOTA_METRICS[method]
    period = "day" if per_day else "minute"
    limit_name = f"{metric}Per{period.title()}PerProject"
    headers = [("Retry-After", str(retry_after_s))] if retry_after_s is not None else []
    return ApiError(
        429,
        "RESOURCE_EXHAUSTED",
        f"Quota exceeded for quota metric '{metric}' and limit '{metric} per {period}' of "
        f"service '{SERVICE}' for consumer 'project_number:{PROJECT_NUMBER}'.",
        [
            {
                "@type": _ERROR_INFO,
                "reason": "RATE_LIMIT_EXCEEDED",
                "domain": "googleapis.com",
                "metadata": {
                    "quota_limit": limit_name,
                    "quota_limit_value": str(limit),
                    "quota_metric": f"{SERVICE}/{metric}",
                    "quota_location": "global",
                    "quota_unit": f"1/{'d' if per_day else 'min'}/{{project}}",
                    "consumer": f"projects/{PROJECT_NUMBER}",
                    "service": SERVICE,
                },
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Request a higher quota limit.",
                        "url": "https://cloud.google.com/docs/quotas/help/request_increase",
                    }
                ],
            },
        ],
        headers,
    )


def not_found(message: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def internal() -> ApiError:
    return ApiError(500, "INTERNAL", "Internal error encountered.")


def unavailable() -> ApiError:
    return ApiError(
        503, "UNAVAILABLE", "The service is currently unavailable.", headers=[("Retry-After", "1")]
    )
