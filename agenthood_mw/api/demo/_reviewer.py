"""``the-reviewer``: reviews the caller's earlier runs, read from episodic memory."""

from __future__ import annotations

from agenthood_mw.api._agent import RunContext

__all__ = ["ReviewerAgent"]

_HISTORY = 10


def _short(text: object, limit: int = 80) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class ReviewerAgent:
    """Reads the caller's last runs from their ``episodic`` memory (the API appends one event
    per run) and asks the model for a review in the light of the task.

    Only the caller's own history is visible: a new user has nothing to review.
    """

    name = "the-reviewer"
    description = "Reviews your earlier agent runs (read from your episodic memory)."

    async def run(self, task: str, ctx: RunContext) -> str:
        ctx.step("read_history", limit=_HISTORY)
        events = await ctx.memory.episodic.list(limit=_HISTORY)
        runs = [e.data for e in events if e.data.get("type") == "run"]
        ctx.tool_call("episodic.list", arguments={"limit": _HISTORY}, result=len(runs))
        if not runs:
            return "No earlier runs of yours to review yet."
        lines = [
            f"- {r.get('agent')}: {_short(r.get('task'))!r} -> {r.get('stopReason')}: "
            f"{_short(r.get('output'))}"
            for r in runs
        ]
        history = "\n".join(lines)
        ctx.partial_output = f"Reviewed {len(runs)} earlier run(s) of yours:\n{history}"
        ctx.emit(ctx.partial_output)  # a streamed run shows the history before the review
        ctx.step("review")
        completion = await ctx.complete(
            [
                {
                    "role": "system",
                    "content": "You review an engineer's recent agent runs. Point out what "
                    "failed or looks risky, in at most three short sentences.",
                },
                {"role": "user", "content": f"Recent runs:\n{history}\n\nFocus: {task}"},
            ],
            max_tokens=300,
        )
        review = f"\nReview:\n{completion.text.strip()}"
        ctx.emit(review)
        return ctx.partial_output + review
