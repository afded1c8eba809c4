"""The one authentication flow, shared by the ASGI and WSGI ``AuthMiddleware`` shells.

:func:`authenticate` strings the decisions of :mod:`agenthood_mw._core.authcore` together:
extract the credential, select the authenticator, run it, check the subject and the scopes,
decide about the verified-token cache, map failures to responses, and count invalid
credentials per client address. It is a generator in the manner of httpx's
``Auth.auth_flow``: it performs no I/O itself but yields a :class:`Call` for every step that may
block (a JWKS fetch, a key-store lookup, a custom authenticator, the failure counter) and is
sent the step's result (or thrown its exception). The WSGI shell runs each step inline
(:func:`run_flow`); the ASGI shell awaits a step's async form or runs a blocking step in a
worker thread. Both shells only feed the request's header bytes in and map the
:class:`Outcome` out.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

from agenthood_mw._core.authcore import (
    Authenticator,
    AuthError,
    Challenges,
    Credential,
    InvalidCredential,
    MissingCredential,
    cache_expiry,
    check_identity,
    check_scopes,
    extract_credential,
    select_authenticator,
)
from agenthood_mw._core.paths import PathSet
from agenthood_mw._core.ratelimit import ClientAddress
from agenthood_mw._errors import HTTPError
from agenthood_mw._identity import Identity

__all__ = [
    "AuthRequest",
    "AuthSettings",
    "Call",
    "FailureLimit",
    "Flow",
    "FlowAuthenticator",
    "Outcome",
    "authenticate",
    "authenticator_flow",
    "run_flow",
]

logger = logging.getLogger("agenthood_mw.auth")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """One step of a flow that may block, run by the shell driving the flow.

    Attributes:
        run: the step as a plain call. The WSGI shell calls it inline; the ASGI shell calls it
            inline too unless ``blocking`` is set (then in a worker thread).
        blocking: ``run`` performs blocking I/O (a database, a socket).
        run_async: an awaitable form the ASGI shell uses instead of ``run`` when given.
    """

    run: Callable[[], Any]
    blocking: bool = False
    run_async: Callable[[], Awaitable[Any]] | None = None


#: A flow: yields :class:`Call` steps, is sent each step's result, returns its answer.
Flow = Generator[Call, Any, T]


def run_flow(flow: Flow[T]) -> T:
    """Drive ``flow`` to its answer, running every step inline (WSGI, sync callers)."""
    try:
        step = next(flow)
        while True:
            try:
                result = step.run()
            except Exception as exc:  # handed to the flow, which decides what it means
                step = flow.throw(exc)
            else:
                step = flow.send(result)
    except StopIteration as stop:
        answer: T = stop.value
        return answer


class FailureLimit(Protocol):
    """The failed-authentication counter of a client address (storage I/O; see ``auth``)."""

    blocking: bool

    def hit(self, address: str) -> float | None:
        """Count one failure; ``None`` within the limit, else seconds until it is lifted."""
        ...


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """The validated options of one ``AuthMiddleware``, built once at construction and read
    by both shells (see ``agenthood_mw.auth`` for how each option is checked)."""

    chain: tuple[Authenticator, ...]
    challenges: Challenges
    required_scopes: frozenset[str]
    optional: bool
    exempt: PathSet
    api_key_header: str | None
    cache_size: int
    max_token_bytes: int
    failure_limit: FailureLimit | None
    client_address: ClientAddress


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """What the flow reads of a request: credential header values and the client address.

    Attributes:
        authorization: every ``Authorization`` header value, in order.
        api_keys: every value of the API-key header.
        peer: the connection's peer address (``None`` when the server gives none).
        forwarded_for: the ``X-Forwarded-For`` values (read only from trusted proxies).
    """

    authorization: Sequence[bytes]
    api_keys: Sequence[bytes] = ()
    peer: str | None = None
    forwarded_for: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """The flow's answer: an identity (and how long its verification may be cached) or an
    error response."""

    identity: Identity | None = None
    error: HTTPError | None = None
    cache_until: float | None = None


class FlowAuthenticator(ABC):
    """An authenticator written as a flow: :meth:`auth_flow` yields its blocking steps.

    The built-in strategies (``"jwt"``, ``"api_key"``) are written this way, so a JWKS fetch or
    a key-store lookup runs inline under WSGI and in a worker thread under ASGI, while the rest
    of the check stays on the caller's thread. ``authenticate`` (the :class:`Authenticator`
    protocol's method) runs the flow inline.
    """

    name: str

    @abstractmethod
    def recognizes(self, credential: Credential) -> bool:
        """Whether ``credential`` looks like one of this authenticator's."""

    @abstractmethod
    def auth_flow(self, credential: Credential) -> Flow[Identity]:
        """Verify ``credential``, yielding a :class:`Call` for each step that may block."""

    def authenticate(self, credential: Credential) -> Identity:
        """Verify ``credential``, running every step inline."""
        return run_flow(self.auth_flow(credential))


def authenticator_flow(authenticator: Authenticator, credential: Credential) -> Flow[object]:
    """Run one authenticator: its own flow when it is a :class:`FlowAuthenticator` (the
    built-in strategies yield their key fetch or store lookup), else one :class:`Call` of
    ``authenticate`` (awaited as ``authenticate_async`` when present, in a worker thread when
    ``blocking``)."""
    if isinstance(authenticator, FlowAuthenticator):
        result: object = yield from authenticator.auth_flow(credential)
        return result
    method = getattr(authenticator, "authenticate_async", None)
    return (
        yield Call(
            partial(authenticator.authenticate, credential),
            blocking=bool(getattr(authenticator, "blocking", False)),
            run_async=None if method is None else partial(method, credential),
        )
    )


def authenticate(settings: AuthSettings, request: AuthRequest) -> Flow[Outcome]:
    """The one authentication flow: extract -> select -> invoke -> check -> scopes -> cache
    decision -> error mapping, with failed attempts counted per client address."""
    authenticator: Authenticator | None = None
    try:
        credential = extract_credential(
            request.authorization,
            request.api_keys,
            api_key_source=settings.api_key_header or "",
            max_length=settings.max_token_bytes,
        )
        if credential is None:
            if settings.optional:
                return Outcome(Identity.anonymous())
            raise MissingCredential("no credential")
        authenticator = select_authenticator(settings.chain, credential)
        identity = check_identity((yield from authenticator_flow(authenticator, credential)))
        check_scopes(identity, settings.required_scopes)
    except AuthError as exc:
        return Outcome(error=(yield from _refusal(settings, request, exc)))
    except Exception as exc:
        # A broken custom authenticator or store: logged, never shown to the client.
        # Only the type at ERROR: an exception text may quote the credential.
        name = getattr(authenticator, "name", "?")
        logger.error("authenticator %r failed: %s", name, type(exc).__name__)
        logger.debug("authenticator %r traceback", name, exc_info=exc)
        return Outcome(error=settings.challenges.unavailable)
    cache_until = None
    if credential.source == "authorization" and getattr(authenticator, "cacheable", False):
        cache_until = cache_expiry(identity)
    return Outcome(identity, cache_until=cache_until)


def _refusal(settings: AuthSettings, request: AuthRequest, error: AuthError) -> Flow[HTTPError]:
    """The response for ``error``; an invalid credential also counts against the client
    address, and answers 429 once the address is over its failed-authentication limit."""
    response = settings.challenges.for_error(error, settings.required_scopes)
    limit = settings.failure_limit
    if limit is None or not isinstance(error, InvalidCredential):
        return response
    address = settings.client_address.resolve(request.peer, request.forwarded_for)
    try:
        retry_after = yield Call(partial(limit.hit, address), blocking=limit.blocking)
    except Exception as exc:
        # The counter's storage is down: the failure is answered as if no limit were set.
        logger.warning("failed-authentication counter unavailable: %s", type(exc).__name__)
        return response
    if retry_after is None:
        return response
    return settings.challenges.too_many_failures(retry_after)
