"""Construction-time checks of storage URLs, so a malformed one fails naming its option.

A URL such as ``redis://host:notaport/0`` is otherwise accepted and only fails when the first
request opens a connection (every request then answers 500). These checks parse without any
network I/O. Error messages never repeat credentials (only the part after ``@``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["check_postgres_dsn", "check_redis_url", "redact"]


def redact(url: str) -> str:
    """``url`` without its credentials (the part before the last ``@`` of the netloc)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<dsn>" if "password" in url else url
    netloc, slash, tail = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return f"{scheme}://{netloc}{slash}{tail}"


def _check_port(port: str, option: str, url: str) -> None:
    if not port:
        return
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{option}: invalid port {port!r} in {redact(url)!r}")


def check_redis_url(url: str, *, option: str) -> None:
    """Raise ``ValueError("<option>: ...")`` if redis-py or limits could not parse ``url``.

    ``redis://``, ``rediss://``, ``unix://`` and ``redis+unix://`` are parsed the way redis-py
    will parse them (host, port, database number, query options); ``redis+sentinel://`` and
    ``redis+cluster://`` the way limits will (comma-separated ``host:port`` locations).
    Without redis-py installed only the ports are checked (the backend then reports the
    missing extra itself).
    """
    scheme = url.partition("://")[0].lower()
    if scheme in ("redis+sentinel", "redis+cluster"):
        from limits._storage_scheme import parse_storage_uri
        from limits.errors import ConfigurationError

        try:
            parse_storage_uri(url)
        except ConfigurationError as exc:
            cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
            detail = str(exc).replace(url, redact(url))
            raise ValueError(f"{option}: {detail}{cause}") from None
        return
    if scheme == "redis+unix":
        url = "unix" + url[len("redis+unix") :]
    try:
        from redis.connection import parse_url
    except ImportError:  # pragma: no cover - depends on the extra
        netloc = urlsplit(url).netloc.rpartition("@")[2]
        host, _, port = netloc.rpartition(":")
        if host and not host.endswith("]"):
            _check_port(port, option, url)
        return
    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise ValueError(f"{option}: cannot parse {redact(url)!r}: {exc}") from None


def check_postgres_dsn(dsn: str, *, option: str) -> None:
    """Raise ``ValueError("<option>: ...")`` if libpq could not parse ``dsn`` or a port is bad.

    libpq's own parser (through psycopg) accepts ``port=notaport``; the connection attempt
    then fails only after the pool's timeout, so the ports are checked here.
    """
    try:
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:  # pragma: no cover - depends on the extra
        return
    try:
        params = conninfo_to_dict(dsn)
    except ProgrammingError as exc:
        raise ValueError(f"{option}: not a valid PostgreSQL URL or DSN: {exc}".strip()) from None
    port = params.get("port")
    if isinstance(port, str):
        for part in port.split(","):
            _check_port(part.strip(), option, dsn)
