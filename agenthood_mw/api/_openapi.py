"""The OpenAPI 3.1 document of :class:`~agenthood_mw.AgenthoodAPI` (bearer security scheme)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agenthood_mw._version import __version__
from agenthood_mw.api._request import BUDGET_RANGES, MAX_JSON_DEPTH

__all__ = ["add_background_runs", "openapi_document"]

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
                        "stream": {
                            "type": "boolean",
                            "description": "Stream the run as Server-Sent Events (as does "
                            "'Accept: text/event-stream').",
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
                                },
                                "text/event-stream": {
                                    "description": "Events start, step, delta, output, "
                                    "tool_call, then result (the RunResponse) or error."
                                },
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
            **_openai_paths(bearer, agent_names),
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


def _run_id_parameter() -> dict[str, Any]:
    return {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _run_status(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/RunStatus"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def add_background_runs(document: dict[str, Any], *, agent_names: Sequence[str]) -> None:
    """Document the background runs (``POST /agents/{name}/runs``, ``GET /runs/{id}``,
    ``GET /runs/{id}/events``, ``POST /runs/{id}/cancel``) in ``document``."""
    bearer: list[dict[str, list[str]]] = [{"bearerAuth": []}]
    states = ["queued", "running", "completed", "stopped", "failed", "interrupted"]
    document["components"]["schemas"]["RunStatus"] = {
        "type": "object",
        "required": ["runId", "agent", "status", "eventId", "result"],
        "properties": {
            "runId": {"type": "string"},
            "agent": {"type": "string"},
            "status": {"type": "string", "enum": states},
            "stopReason": {"type": ["string", "null"]},
            "createdAt": {"type": "number"},
            "startedAt": {"type": ["number", "null"]},
            "endedAt": {"type": ["number", "null"]},
            "error": {"type": ["object", "null"]},
            "eventId": {"type": "integer", "description": "Id of the latest status event."},
            "result": {
                "description": "The run response once the run is over (null before, and for "
                "failed or interrupted runs).",
                "oneOf": [{"$ref": "#/components/schemas/RunResponse"}, {"type": "null"}],
            },
        },
    }
    run = [_run_id_parameter()]
    paths = document["paths"]
    paths["/agents/{name}/runs"] = {
        "post": {
            "summary": "Start a background run; answers 202 at once",
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
                    "application/json": {"schema": {"$ref": "#/components/schemas/RunRequest"}}
                },
            },
            "responses": {
                "202": _run_status("Accepted; Location is /runs/{runId}."),
                "401": _error("Missing or invalid credential."),
                "403": _error("The credential lacks a required scope."),
                "404": _error("Unknown agent."),
                "413": _error("Request body too large."),
                "415": _error("Content type is not application/json."),
                "422": _error("Invalid task, budget or JSON."),
                "429": _error("Rate limited, budget used up or too many runs in flight."),
                "503": _error("Shutting down, or the run could not be recorded."),
            },
        }
    }
    paths["/runs/{run_id}"] = {
        "get": {
            "summary": "A background run's status (and result), or a finished run's trace",
            "security": bearer,
            "parameters": run,
            "responses": {
                "200": {"description": "RunStatus for a background run, else the trace."},
                "404": _error("No such run of yours."),
            },
        }
    }
    paths["/runs/{run_id}/events"] = {
        "get": {
            "summary": "A background run as Server-Sent Events (resume with Last-Event-ID)",
            "security": bearer,
            "parameters": [
                *run,
                {"name": "Last-Event-ID", "in": "header", "schema": {"type": "integer"}},
                {
                    "name": "detail",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["status", "run"], "default": "status"},
                    "description": "'run': also the run's own events (start, step, tool_call, "
                    "output, delta, result / error), numbered on their own.",
                },
            ],
            "responses": {
                "200": {
                    "description": "'status' events whose data is the RunStatus (with "
                    "detail=run, the run's events between them); the stream ends with the "
                    "final state.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "400": _error("'detail' is not 'status' or 'run'."),
                "404": _error("No background run of yours with this id."),
            },
        }
    }
    paths["/runs/{run_id}/cancel"] = {
        "post": {
            "summary": "Stop a background run (what it used is charged)",
            "security": bearer,
            "parameters": run,
            "responses": {
                "200": _run_status("The run's record after the cancel."),
                "404": _error("No background run of yours with this id."),
                "409": _error("The run executes in another worker process."),
            },
        }
    }


def _openai_paths(bearer: list[dict[str, list[str]]], agent_names: Sequence[str]) -> dict[str, Any]:
    """The OpenAI-compatible surface (its bodies are OpenAI's; see docs/api.md)."""
    return {
        "/v1/chat/completions": {
            "post": {
                "summary": "OpenAI-compatible chat completion: 'model' is an agent's name",
                "security": bearer,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["model", "messages"],
                                "properties": {
                                    "model": {"type": "string", "enum": list(agent_names)},
                                    "messages": {"type": "array", "minItems": 1},
                                    "stream": {"type": "boolean"},
                                    "stream_options": {"type": "object"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {"description": "A chat.completion, or chat.completion.chunk events."},
                    "401": _error("Missing or invalid credential."),
                    "404": _error("Unknown agent (code model_not_found)."),
                    "422": _error("Invalid messages or parameters."),
                    "429": _error("Rate limited or budget spent (see Retry-After)."),
                },
            }
        },
        "/v1/models": {
            "get": {
                "summary": "The agents, as OpenAI models",
                "security": bearer,
                "responses": {"200": {"description": "A list of model objects."}},
            }
        },
    }
