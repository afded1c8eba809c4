"""``the-developer``: plans a task with the model, then works through the plan under budget."""

from __future__ import annotations

import re

from agenthood_mw.api._agent import RunContext

__all__ = ["DeveloperAgent"]

_MAX_STEPS = 8
_NUMBERED = re.compile(r"^\s*(?:\d+[.)]|[-*])\s*(?P<step>.+?)\s*$")


def parse_plan(text: str) -> list[str]:
    """The numbered (or bulleted) lines of a plan, at most eight."""
    text = text.removeprefix("[offline]").strip()
    steps = [m["step"] for line in text.splitlines() if (m := _NUMBERED.match(line))]
    if not steps and text:
        steps = [" ".join(text.split())]
    return steps[:_MAX_STEPS]


class DeveloperAgent:
    """Asks the model for a short numbered plan, stores it in the caller's ``project`` memory
    (``plans/<runId>``), then carries out each step with one model call.

    Every step goes through ``ctx.step`` and ``ctx.complete``, so the thinking budget stops a
    runaway plan (``stopReason: budget_exhausted:steps``) and the partial work is returned.
    """

    name = "the-developer"
    description = "Plans a development task and works through the plan step by step."

    async def run(self, task: str, ctx: RunContext) -> str:
        ctx.step("plan")
        plan = await ctx.complete(
            [
                {
                    "role": "system",
                    "content": "You are a careful software developer. Reply with a numbered "
                    "list of 3 to 5 short steps that accomplish the task, nothing else.",
                },
                {"role": "user", "content": task},
            ],
            max_tokens=400,
        )
        steps = parse_plan(plan.text)
        await ctx.memory.project.put(f"plans/{ctx.run_id}", {"task": task, "steps": steps})
        done: list[str] = []
        for number, step in enumerate(steps, 1):
            ctx.partial_output = self._report(task, steps, done)
            ctx.step("execute", number=number, step=step)
            result = await ctx.complete(
                [
                    {
                        "role": "system",
                        "content": "Carry out this step of the task and report what you did "
                        "in one sentence.",
                    },
                    {"role": "user", "content": f"Task: {task}\nStep {number}: {step}"},
                ],
                max_tokens=200,
            )
            first_line = next((ln for ln in result.text.splitlines() if ln.strip()), "")
            summary = " ".join(first_line.split())
            if len(summary) > 160:
                summary = summary[:159] + "…"
            done.append(f"{number}. {step} — {summary}")
        return self._report(task, steps, done)

    @staticmethod
    def _report(task: str, steps: list[str], done: list[str]) -> str:
        subject = " ".join(task.split())
        if len(subject) > 200:
            subject = subject[:199] + "…"
        head = f"Completed {len(done)} of {len(steps)} planned step(s) for: {subject}"
        return "\n".join([head, *done])
