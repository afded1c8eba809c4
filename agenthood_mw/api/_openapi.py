"""The OpenAPI 3.1 document of :class:`~agenthood_mw.AgenthoodAPI` (bearer security scheme)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agenthood_mw._version import __version__
from agenthood_mw.api._request import BUDGET_RANGES, MAX_JSON_DEPTH

__all__ = ["openapi_document"]

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _range(kind: str, field: str) -> dict[str, Any]:
    low, high = BUDGET_RANGES[field]
    if kind == "number":  # JSON numbers (the decimal bounds print exactly as these floats)
        return {"type": kind, "minimum": float(low), "maximum": float(high)}
    return {"type": kind, "minimum": int(low), "maximum": int(high)}


def openapi_document(*, title: str, agent_names: Sequence[str]) -> dict[str, Any]:
    """Build the document; ``agent_names`` becomes the enum of the ``name`` path parameter."""
    bearer: list[dict[str, list[str]]] = [{"bearerAuth": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__},
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A JWT (or an API key, when the server accepts them) sent "
                    "as 'Authorization: Bearer <token>'.",
                }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["type", "message"],
                            "properties": {
                                "type": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
                "RunRequest": {
                    "type": "object",
                    "required": ["task"],
                    "additionalProperties": False,
                    "properties": {
                        "task": {
                            "type": "string",
                            "minLength": 1,
                            "description": "No control characters other than tab, line feed "
                            "and carriage return; the body nests at most "
                            f"{MAX_JSON_DEPTH} levels.",
                        },
                        "budget": {
                            "type": "object",
                            "additionalProperties": False,
                            "description": "Limits that can only lower the agent's own.",
                            "properties": {
                                "maxSteps": _range("integer", "maxSteps"),
                                "maxTokens": _range("integer", "maxTokens"),
                                "maxCost": _range("number", "maxCost"),
                                "maxSeconds": _range("number", "maxSeconds"),
                            },
                        },
                        "conversationId": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 128,
                            "description": "Names one of the caller's conversations (agents "
                            "that keep threads, e.g. LangGraphAgent, keep one per user and "
                            "conversation).",
                        },
                    },
                },
                "RunResponse": {
                    "type": "object",
                    "required": [
                        "agent",
                        "userId",
                        "output",
                        "steps",
                        "cost",
                        "memoryScope",
                        "runId",
                        "stopReason",
                    ],
                    "properties": {
                        "agent": {"type": "string"},
                        "userId": {"type": "string"},
                        "output": {"type": "string"},
                        "steps": {"type": "integer"},
                        "cost": {
                            "type": "object",
                            "properties": {
                                "inputTokens": {"type": "integer"},
                                "outputTokens": {"type": "integer"},
                                "totalCost": {"type": "number"},
                            },
                        },
                        "memoryScope": {"type": "string"},
                        "runId": {"type": "string"},
                        "stopReason": {"type": "string"},
                    },
                },
            },
        },
        "paths": {
            "/agents/{name}/run": {
                "post": {
                    "summary": "Run an agent for the authenticated caller",
                    "security": bearer,
                    "parameters": [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": list(agent_names)},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/RunRequest"}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "The run finished (or its budget stopped it).",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/RunResponse"}
                                }
                            },
                        },
                        "401": _error("Missing or invalid credential."),
                        "403": _error("The credential lacks a required scope."),
                        "404": _error("Unknown agent."),
                        "413": _error("Request body too large."),
                        "415": _error("Content type is not application/json."),
                        "422": _error("Invalid task, budget or JSON."),
                        "429": _error("Rate limited (see Retry-After)."),
                        "502": _error("The model provider refused the request."),
                        "503": _error("Every model provider is unavailable (see Retry-After)."),
                    },
                }
            },
            "/agents": {
                "get": {
                    "summary": "List the agents (name and description)",
                    "security": bearer,
                    "responses": {"200": {"description": "The agents."}},
                }
            },
            "/runs/{run_id}": {
                "get": {
                    "summary": "The trace of one of your runs (another user's run is a 404)",
                    "security": bearer,
                    "parameters": [
                        {
                            "name": "run_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {"description": "The run's trace."},
                        "404": _error("No such run of yours."),
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "Liveness and store checks (no authentication)",
                    "security": [],
                    "responses": {
                        "200": {"description": "Every store answered."},
                        "503": {
                            "description": "A store did not answer.",
                            "headers": {
                                "Retry-After": {
                                    "description": "Seconds until a new check can answer.",
                                    "schema": {"type": "integer", "minimum": 1},
                                }
                            },
                        },
                    },
                }
            },
        },
    }
