"""What the SDK raises: ApiError for every non-2xx answer (the service's error shape), TransportError
when no answer came, WebhookSignatureError for a webhook that is not the service's."""

from __future__ import annotations

from typing import Any


class SignalingError(Exception):
    """Base of everything this SDK raises."""


class TransportError(SignalingError):
    """No HTTP answer (refused, reset, timed out), after the retries the request was allowed."""


class WebhookSignatureError(SignalingError):
    """A webhook request whose `X-Signaling-Signature` is missing or does not match its body."""


class ApiError(SignalingError):
    """A non-2xx answer, in the service's error shape `{code, status, message, errors}`.

    `errors` holds field errors (422: `{"json": {"field": ["..."]}}`); `retry_after` the seconds
    of a Retry-After header (429, 503). An answer not in that shape (a proxy's HTML page) keeps
    its HTTP status as `code` and the start of its text as `message`."""

    def __init__(
        self,
        code: int,
        status: str,
        message: str,
        errors: dict[str, Any] | None = None,
        *,
        method: str = "",
        url: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code} {status}: {message}")
        self.code = code
        self.status = status
        self.message = message
        self.errors: dict[str, Any] = errors or {}
        self.method = method
        self.url = url
        self.retry_after = retry_after


class BadRequest(ApiError):
    """400: the body is not JSON, or the Idempotency-Key is malformed."""


class Unauthorized(ApiError):
    """401: no valid X-API-Key."""


class Forbidden(ApiError):
    """403: a join token that was rotated away, a role that may not do this."""


class NotFound(ApiError):
    """404: no such session, participant or recording."""


class Conflict(ApiError):
    """409: the participant has left, the session is closed, a minted token was used already."""


class PayloadTooLarge(ApiError):
    """413: the body is over the service's MAX_BODY_BYTES."""


class Unprocessable(ApiError):
    """422: a field is missing or invalid (`errors` says which), or an Idempotency-Key reused with another body."""


class RateLimited(ApiError):
    """429: too many requests; `retry_after` says when to try again."""


class ServiceUnavailable(ApiError):
    """503: the service's database or broker is away for a moment; retried by the client already."""


ERRORS_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: Unprocessable,
    429: RateLimited,
    503: ServiceUnavailable,
}
