"""The demo agents served by ``agenthood serve``: the-developer, the-reviewer, the-scribe."""

from __future__ import annotations

from agenthood_mw.api.demo._developer import DeveloperAgent
from agenthood_mw.api.demo._reviewer import ReviewerAgent
from agenthood_mw.api.demo._scribe import ScribeAgent

__all__ = ["DeveloperAgent", "ReviewerAgent", "ScribeAgent", "demo_agents"]


def demo_agents() -> list[DeveloperAgent | ReviewerAgent | ScribeAgent]:
    """One instance of each demo agent."""
    return [DeveloperAgent(), ReviewerAgent(), ScribeAgent()]
