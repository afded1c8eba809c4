"""Token helpers for users' tests: mint a JWT, build the header, generate a key pair."""

from __future__ import annotations

from typing import Any

from agenthood_mw.auth import mint_token

__all__ = ["bearer_headers", "generate_keypair", "mint_token"]


def bearer_headers(token: str) -> dict[str, str]:
    """``{"Authorization": "Bearer <token>"}`` for a test client."""
    return {"Authorization": f"Bearer {token}"}


def generate_keypair(algorithm: str = "RS256") -> tuple[bytes, bytes]:
    """A fresh ``(private_pem, public_pem)`` pair for RS*/PS* (2048-bit), ES256/384/512 or EdDSA."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    private: Any
    if algorithm.startswith(("RS", "PS")):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif algorithm in ("ES256", "ES384", "ES512"):
        curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
        private = ec.generate_private_key(curve[algorithm])
    elif algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"algorithm: no key pair for {algorithm!r}")
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem
