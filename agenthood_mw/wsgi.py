"""WSGI twins of the middlewares (Flask, Django, gunicorn, waitress): same names, same keywords.

Each class is a native WSGI middleware driving the same sans-I/O core as its ASGI twin in
:mod:`agenthood_mw`; no ASGI bridge sits in the request path. Usage::

    flask_app.wsgi_app = agenthood_mw.wsgi.AuthMiddleware(flask_app.wsgi_app, strategy="jwt", ...)
"""

from __future__ import annotations

from agenthood_mw.auth._wsgi import AuthMiddleware
from agenthood_mw.metering._wsgi import CostMeterMiddleware
from agenthood_mw.ratelimit._wsgi import RateLimitMiddleware

__all__ = ["AuthMiddleware", "CostMeterMiddleware", "RateLimitMiddleware"]
