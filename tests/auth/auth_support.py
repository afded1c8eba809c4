"""Shared by the auth tests (put on sys.path by tests/auth/conftest.py).

Test apps: the same routes as a Starlette app, a FastAPI app and a Flask app.

``make_client(shell, **options)`` wraps the shell's app in ``AuthMiddleware(**options)`` and
returns a :class:`Client` whose ``request`` answers ``(status, headers, json)`` alike for all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request

from agenthood_mw import Identity, current_identity
from agenthood_mw._asgi import agenthood_state as asgi_state
from agenthood_mw._wsgi import agenthood_state as wsgi_state
from agenthood_mw.auth import require_identity

SECRET = "test-secret-for-agenthood-auth-0123456789"
AUDIENCE = "agenthood-api"
SHELLS = ("starlette", "fastapi", "flask")


def describe(user: Identity, current: Identity, state: Identity) -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "tenant": user.tenant,
        "scopes": sorted(user.scopes),
        "method": user.method,
        "authenticated": user.is_authenticated,
        "current": current.user_id,
        "state": state.user_id,
        "same_object": user is current is state,
    }


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.authentication import requires
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def me(request: Request) -> JSONResponse:
        body = describe(request.user, current_identity(), asgi_state(request.scope)["identity"])
        body["auth_scopes"] = sorted(request.auth.scopes)
        return JSONResponse(body)

    @requires("agents:run")
    async def run(request: Request) -> JSONResponse:
        return JSONResponse({"ran_for": request.user.user_id})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "user": request.user.user_id})

    return Starlette(
        routes=[
            Route("/me", me, methods=["GET", "POST", "OPTIONS"]),
            Route("/agents/run", run, methods=["GET", "POST"]),
            Route("/health", health),
        ]
    )


def fastapi_app() -> Any:
    app = FastAPI()

    @app.api_route("/me", methods=["GET", "POST", "OPTIONS"])
    def me(request: Request) -> dict[str, Any]:
        body = describe(request.user, current_identity(), asgi_state(request.scope)["identity"])
        body["auth_scopes"] = sorted(request.auth.scopes)
        return body

    @app.get("/agents/run")
    @app.post("/agents/run")
    async def run(user: Identity = Depends(require_identity("agents:run"))) -> dict[str, Any]:  # noqa: B008
        return {"ran_for": user.user_id}

    @app.get("/health")
    def health(request: Request) -> dict[str, Any]:
        return {"ok": True, "user": request.user.user_id}

    return app


def flask_app() -> Any:
    from flask import Flask, jsonify, request

    app = Flask(__name__)

    @app.route("/me", methods=["GET", "POST", "OPTIONS"])
    def me() -> Any:
        env = request.environ
        body = describe(env["agenthood.identity"], current_identity(), wsgi_state(env)["identity"])
        body["auth_scopes"] = sorted(env["agenthood.identity"].scopes)
        return jsonify(body)

    @app.route("/agents/run", methods=["GET", "POST"])
    def run() -> Any:
        user = current_identity()
        if not user.has_scopes("agents:run"):
            return jsonify({"error": "forbidden"}), 403
        return jsonify({"ran_for": user.user_id})

    @app.get("/health")
    def health() -> Any:
        return jsonify({"ok": True, "user": request.environ["agenthood.identity"].user_id})

    return app


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


class Client:
    """One interface over Starlette's TestClient and Flask's test client."""

    def __init__(self, shell: str, options: dict[str, Any]) -> None:
        self.shell = shell
        if shell == "flask":
            from agenthood_mw.auth._wsgi import AuthMiddleware as WSGIAuth

            app = flask_app()
            app.wsgi_app = WSGIAuth(app.wsgi_app, **options)  # type: ignore[method-assign]
            self.middleware = app.wsgi_app
            self._flask = app.test_client()
        else:
            from starlette.testclient import TestClient

            from agenthood_mw.auth import AuthMiddleware

            if shell == "starlette":
                app = AuthMiddleware(starlette_app(), **options)
                self.middleware = app
            else:
                app = fastapi_app()
                app.add_middleware(AuthMiddleware, **options)
            self._asgi = TestClient(app)

    def request(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[str, str]] | dict[str, str] = (),
    ) -> Response:
        items = list(headers.items()) if isinstance(headers, dict) else list(headers)
        if self.shell == "flask":
            r = self._flask.open(path, method=method, headers=items)
            return Response(
                r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.get_data(True)
            )
        r2 = self._asgi.request(method, path, headers=items)
        return Response(r2.status_code, {k.lower(): v for k, v in r2.headers.items()}, r2.text)

    def get(self, path: str, token: str | None = None, **kw: Any) -> Response:
        headers = list(kw.pop("headers", []))
        if token is not None:
            headers.append(("Authorization", f"Bearer {token}"))
        return self.request("GET", path, headers)


class KeyServer:
    """A real HTTP server on 127.0.0.1 (port 0, in a thread) serving JSON documents by path.

    It records every request path, can change what it serves at any time (key rotation) and
    can be stopped (the endpoint "goes down": connections are refused).
    """

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.documents: dict[str, Any] = {}
        self.requests: list[str] = []
        self.delay = 0.0
        self._lock = threading.Lock()
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if server_self.delay:
                    time.sleep(server_self.delay)
                with server_self._lock:
                    server_self.requests.append(self.path)
                    doc = server_self.documents.get(self.path)
                if doc is None:
                    self.send_error(404)
                    return
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        self.running = True

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hits(self, path: str) -> int:
        with self._lock:
            return self.requests.count(path)

    def stop(self) -> None:
        if self.running:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self.running = False


def public_jwk(private_pem: bytes, kid: str, alg: str = "RS256") -> dict[str, Any]:
    """The public JWK (with kid and alg) of a PEM private key."""
    from cryptography.hazmat.primitives import serialization
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    key = serialization.load_pem_private_key(private_pem, password=None)
    algorithm = RSAAlgorithm if alg.startswith(("RS", "PS")) else ECAlgorithm
    jwk = json.loads(algorithm.to_jwk(key.public_key()))  # type: ignore[union-attr]
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return dict(jwk)


def b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: Any, hmac_key: bytes | None = None) -> str:
    """A hand-made token: HMAC-SHA256 signed with ``hmac_key``, or unsigned (``alg: none``)."""
    import hashlib
    import hmac

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if hmac_key is None:
        return signing_input + "."
    sig = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


def sign(
    payload: Any, private_pem: bytes, *, alg: str = "RS256", headers: dict[str, Any] | None = None
) -> str:
    """Sign arbitrary payload JSON (no claim validation at all) with a private key."""
    import jwt

    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return jwt.api_jws.encode(raw, private_pem, algorithm=alg, headers=headers)
