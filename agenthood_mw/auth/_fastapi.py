"""A FastAPI-friendly dependency for routes behind ``AuthMiddleware``.

It needs no FastAPI import: FastAPI injects the Starlette :class:`~starlette.requests.Request`
the returned function asks for. Usage::

    @app.post("/agents/{name}/run")
    async def run(name: str, user: Identity = Depends(require_identity("agents:run"))): ...
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from agenthood_mw._core.authcore import validate_scopes
from agenthood_mw._identity import Identity

__all__ = ["require_identity"]


def require_identity(
    *scopes: str, realm: str = "agenthood"
) -> Callable[[HTTPConnection], Identity]:
    """A dependency returning the caller's :class:`Identity`, requiring ``scopes``.

    Raises ``HTTPException`` 401 (with ``WWW-Authenticate``) when the caller is anonymous
    (``optional=True`` middleware) and 403 ``insufficient_scope`` when a scope is missing.
    The exception's ``detail`` is the error type, so FastAPI answers
    ``{"detail": "insufficient_scope"}``.
    """
    required = validate_scopes(scopes, option="scopes")
    challenge = f'Bearer realm="{realm}"'
    forbidden = f'{challenge}, error="insufficient_scope", scope="{" ".join(sorted(required))}"'

    def dependency(request: HTTPConnection) -> Identity:
        user = request.scope.get("user")
        if not isinstance(user, Identity):
            raise RuntimeError(
                "require_identity() used on a route that AuthMiddleware does not wrap"
            )
        if not user.is_authenticated:
            raise HTTPException(
                401,
                detail="unauthorized",
                headers={"WWW-Authenticate": challenge},
            )
        if not required <= user.scopes:
            raise HTTPException(
                403,
                detail="insufficient_scope",
                headers={"WWW-Authenticate": forbidden},
            )
        return user

    return dependency
