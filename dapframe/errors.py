"""The one exception tree of dapframe.

Every error dapframe raises on purpose derives from :class:`DapError`, and its
message is one line that names the problem and, where there is one, the fix::

    DapError
    ├── ConfigError            bad or missing configuration (credentials, base URL, options)
    ├── UsageError             bad input from the caller (unknown table, malformed timestamp, ...)
    ├── SchemaError            a table schema uses a keyword or shape dapframe does not know
    ├── TransportError         the API could not be reached or the connection broke
    │   └── DapTimeoutError    a request timed out
    ├── APIError               the API answered with an error (``status``, ``type``, ``uuid``)
    │   ├── AuthenticationError   401: wrong or expired credentials
    │   ├── AccountError          403: account not onboarded, disabled, under maintenance, forbidden
    │   ├── ValidationError       400: malformed request
    │   ├── NotFoundError         404: unknown namespace, table, job or object (``kind``, ``id``)
    │   ├── OutOfRangeError       400: ``since``/``until`` outside the data the API holds
    │   │   └── SnapshotRequiredError   400: the table was reloaded; take a new snapshot
    │   ├── RateLimitError        429 after every retry was spent
    │   └── ServerError           5xx, or an answer that does not follow the protocol
    ├── DatabaseError          a replica database refused or failed an operation (sync)
    ├── JobError               a query job did not complete
    │   ├── JobFailedError     the job ended with status ``failed``
    │   └── JobTimeoutError    the job was still running at the deadline
    └── DownloadError          an object could not be downloaded after every retry

Secrets never reach these messages: only the caller's own words and the API's
error bodies (which carry no credentials) are put in them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "AccountError",
    "AuthenticationError",
    "ConfigError",
    "DapError",
    "DapTimeoutError",
    "DatabaseError",
    "DownloadError",
    "JobError",
    "JobFailedError",
    "JobTimeoutError",
    "NotFoundError",
    "OutOfRangeError",
    "RateLimitError",
    "SchemaError",
    "ServerError",
    "SnapshotRequiredError",
    "TransportError",
    "UsageError",
    "ValidationError",
]


class DapError(Exception):
    """Base class of every error dapframe raises on purpose."""

    #: Exit code the CLI uses for this error (5 = operational failure, as ``dap``).
    exit_code: int = 5


class ConfigError(DapError):
    """Configuration is missing or invalid (credentials, base URL, options)."""


class UsageError(DapError):
    """The caller's input is invalid (unknown table, malformed timestamp, ...)."""

    exit_code = 2


class SchemaError(DapError):
    """A table schema document uses a keyword or shape dapframe does not understand.

    The message names the table, the column and the keyword, and says what to do
    (upgrade dapframe, or report the schema if the newest version fails too).

    Attributes
    ----------
    table : str | None
        ``<namespace>.<table>`` whose schema failed.
    column : str | None
        Dotted label of the offending column (``value.settings``), if any.
    keyword : str | None
        The JSON Schema keyword that is unknown or has an unsupported value.
    """

    exit_code = 5

    def __init__(self, message: str, *, table: str | None = None, column: str | None = None,
                 keyword: str | None = None) -> None:
        super().__init__(message)
        self.table = table
        self.column = column
        self.keyword = keyword


class TransportError(DapError):
    """The API could not be reached, or the connection broke mid-request."""


class DapTimeoutError(TransportError):
    """A request to the API timed out."""


class APIError(DapError):
    """The API answered with an error.

    Attributes
    ----------
    status : int
        HTTP status code.
    type : str | None
        The API's machine-readable error type (``error.type`` in the body).
    uuid : str | None
        The API's log correlation id, worth quoting to Instructure support.
    body : dict
        The ``error`` object of the response, as sent.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type: str | None = None,
        uuid: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.uuid = uuid
        self.body = body or {}


class AuthenticationError(APIError):
    """401: the credentials were refused or the token expired."""


class AccountError(APIError):
    """403: the account is not onboarded, disabled, under maintenance, or forbidden."""


class ValidationError(APIError):
    """400: the API refused the request as malformed."""


class NotFoundError(APIError):
    """404: an unknown namespace, table, job or object.

    Attributes
    ----------
    kind : str | None
        ``namespace``, ``table``, ``job`` or ``object``.
    id : str | None
        The identifier that was not found.
    """

    def __init__(self, message: str, *, kind: str | None = None, id: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.kind = kind
        self.id = id


class OutOfRangeError(APIError):
    """400: ``since``/``until`` lie outside the data the API holds.

    Attributes
    ----------
    since, until : str | None
        The earliest and latest permitted timestamps, as the API sent them.
    """

    def __init__(self, message: str, *, since: str | None = None, until: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.since = since
        self.until = until


class SnapshotRequiredError(OutOfRangeError):
    """400: the table was reloaded upstream; an incremental query needs a new snapshot."""


class RateLimitError(APIError):
    """429: the API kept refusing the call for its rate limit after every retry."""


class ServerError(APIError):
    """5xx from the API, or an answer that does not follow the protocol."""


class DatabaseError(DapError):
    """A replica database could not be reached, refused the credentials, or failed an operation.

    Raised by :mod:`dapframe.sync` with one line that names the database (password hidden), the
    table and the fix: unreachable server, wrong password, a table that is not initialised, a
    table that is already initialised, views in the way of a migration, ...
    """


class JobError(DapError):
    """A query job did not complete.

    Attributes
    ----------
    job_id : str
        The job's id.
    """

    def __init__(self, message: str, *, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobFailedError(JobError):
    """The job ended with status ``failed``; ``error_type`` and ``uuid`` say why."""

    def __init__(self, message: str, *, job_id: str, error_type: str | None = None,
                 uuid: str | None = None) -> None:
        super().__init__(message, job_id=job_id)
        self.error_type = error_type
        self.uuid = uuid


class JobTimeoutError(JobError):
    """The job was still waiting or running when the deadline passed."""


class DownloadError(DapError):
    """An object could not be downloaded after every retry.

    Attributes
    ----------
    object_id : str
        The object that failed.
    """

    def __init__(self, message: str, *, object_id: str) -> None:
        super().__init__(message)
        self.object_id = object_id
