"""The exception tree of proxypool: one root, every error a caller can meet.

::

    ProxyPoolError                  root: catch this to catch everything proxypool raises
    ├── ConfigError (ValueError)    bad input or configuration, detected before any network call
    │   └── InvalidGeo              unknown country/state/city; ``.suggestions`` holds close matches
    ├── ProviderError               talking to the provider's API went wrong
    │   ├── ApiError                the provider answered with an error code
    │   │   │                       (``.code``, ``.message``, ``.http_status``)
    │   │   └── AccountError        the account itself is unusable; retrying cannot help
    │   │       ├── InvalidAppKey       code 3: app_key invalid or expired
    │   │       └── RealNameRequired    code 156: real-name verification not done
    │   ├── ApiResponseError        unusable answer: HTML, redirect, empty, non-JSON, wrong shape
    │   └── ApiConnectionError      network failure or timeout before an answer arrived
    └── PoolExhausted               no usable proxy could be had in time
        └── BanStorm                a site banned every proxy of the last batches bought:
                                    no more are bought for it for a while (``.domain``)

No message, ``repr`` or ``str`` of these exceptions ever contains the app_key: the client builds
every message from redacted parts, and lower-level exceptions whose text holds request URLs are
not chained (their text is redacted into the message instead).
"""

from __future__ import annotations

__all__ = [
    "AccountError",
    "ApiConnectionError",
    "ApiError",
    "ApiResponseError",
    "BanStorm",
    "ConfigError",
    "InvalidAppKey",
    "InvalidGeo",
    "PoolExhausted",
    "ProviderError",
    "ProxyPoolError",
    "RealNameRequired",
]


class ProxyPoolError(Exception):
    """Root of every exception proxypool raises."""


class ConfigError(ProxyPoolError, ValueError):
    """Bad input or configuration. Raised before any request is sent.

    ``field`` names the offending parameter or setting (``None`` when it concerns several).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidGeo(ConfigError):
    """A country, state or city the provider does not know; ``suggestions`` lists close matches."""

    def __init__(
        self, message: str, *, field: str | None = None, suggestions: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message, field=field)
        self.suggestions = tuple(suggestions)


class ProviderError(ProxyPoolError):
    """Something went wrong talking to the provider's API."""


class ApiError(ProviderError):
    """The provider answered with an error code.

    ``code`` is the envelope's code (``None`` when the body had none, e.g. a bare HTTP 500),
    ``message`` the provider's message (shortened), ``http_status`` the HTTP status.
    """

    def __init__(self, message: str, *, code: int | None = None, http_status: int | None = None):
        self.code = code
        self.message = message
        self.http_status = http_status
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = []
        if self.code is not None:
            parts.append(f"code {self.code}")
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}")
        where = f" ({', '.join(parts)})" if parts else ""
        return f"provider error{where}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, http_status={self.http_status!r}, "
            f"message={self.message!r})"
        )


class AccountError(ApiError):
    """The account cannot be used as configured; retrying will not help (bad key, verification)."""


class InvalidAppKey(AccountError):
    """Code 3: the app_key is invalid or has expired. Set a valid key in ``PROXYPOOL_APP_KEY``."""


class RealNameRequired(AccountError):
    """Code 156: the account has not passed the provider's real-name verification."""


class ApiResponseError(ProviderError):
    """The provider's answer could not be used: HTML, a redirect, an empty or non-JSON body, or
    JSON of the wrong shape. ``http_status`` is the HTTP status of that answer."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class ApiConnectionError(ProviderError):
    """The provider could not be reached, or did not answer in time.

    ``sent`` is False when the request certainly never reached the provider (the connection was
    refused or could not be opened in time), True when it may have: a call that costs money is
    retried only in the first case.
    """

    def __init__(self, message: str, *, sent: bool = True) -> None:
        self.sent = sent
        super().__init__(message)


class PoolExhausted(ProxyPoolError):
    """No usable proxy could be had within the timeout (or the extraction budget is spent).

    The underlying cause, if any (an API error, empty extractions), is chained as ``__cause__``.
    """


class BanStorm(PoolExhausted):
    """A site banned every proxy of the last few batches the pool bought (a ban storm), so the
    pool buys no more proxies for it until a cool-down ends; its requests fail with this at once.

    ``domain`` is the site (host name, lower case); ``retry_after`` the seconds until buying for
    it resumes. Other sites are served as before.
    """

    def __init__(self, message: str, *, domain: str, retry_after: float) -> None:
        super().__init__(message)
        self.domain = domain
        self.retry_after = retry_after
