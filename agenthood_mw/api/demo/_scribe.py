"""``the-scribe``: remembers facts for each user and recalls them (memory tier at work)."""

from __future__ import annotations

import re
from typing import Any

from agenthood_mw.api._agent import RunContext

__all__ = ["ScribeAgent"]

_REMEMBER = re.compile(r"^\s*remember\s+(?:that\s+)?(?P<rest>.+)$", re.I | re.S)
_RECALL = re.compile(
    r"^\s*(?:recall|what\s+is|what's|what\s+do\s+you\s+know\s+about)\s+(?P<q>.+?)\??\s*$",
    re.I | re.S,
)
_FORGET = re.compile(r"^\s*forget\s+(?P<key>.+?)\s*$", re.I | re.S)
_LIST = re.compile(r"^\s*(?:list|list\s+notes|what\s+do\s+you\s+know)\??\s*$", re.I)
_MAX_KEY = 100
_MAX_SEARCH_TERMS = 8
#: What a memory key may not hold (control characters, line/paragraph separators, surrogates):
#: read as a space, so any task the API accepts makes a valid key.
_NOT_IN_KEYS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _key(text: str) -> str:
    text = _NOT_IN_KEYS.sub(" ", text)
    key = " ".join(text.lower().split()).strip(" .:;,!?")
    return key[:_MAX_KEY].strip() or "note"


def _split_fact(rest: str) -> tuple[str, str]:
    for sep in (":", "=", " is ", " are "):
        if sep in rest:
            key, value = rest.split(sep, 1)
            if key.strip() and value.strip():
                return _key(key), value.strip()
    words = rest.split()
    return _key(" ".join(words[:5])), rest.strip()


def _value_text(value: Any) -> str:
    if isinstance(value, dict) and "value" in value:
        return str(value["value"])
    return str(value)


class ScribeAgent:
    """Keeps per-user notes in the caller's ``facts`` memory.

    * ``remember my editor: vim`` / ``remember that the deploy day is Tuesday`` stores a fact;
    * ``recall my editor`` / ``what is the deploy day?`` recalls it (exact key, then search);
    * ``forget my editor`` deletes it; ``list`` lists every note;
    * anything else is a free-form note: the model summarises it in one line and the summary is
      stored.

    Facts live in the caller's scope only: another user asking the same question gets nothing.
    """

    name = "the-scribe"
    description = "Remembers facts for you and recalls them later (per-user memory)."

    async def run(self, task: str, ctx: RunContext) -> str:
        facts = ctx.memory.facts
        if match := _REMEMBER.match(task):
            key, value = _split_fact(match["rest"])
            ctx.step("remember", key=key)
            await facts.put(key, {"value": value, "runId": ctx.run_id})
            return f"Noted: {key} = {value}"
        if match := _FORGET.match(task):
            key = _key(match["key"])
            ctx.step("forget", key=key)
            existed = await facts.get(key) is not None
            await facts.delete(key)
            return f"Forgot {key}." if existed else f"I had no note called {key}."
        if _LIST.match(task):
            ctx.step("list")
            page = await facts.list(limit=50)
            if not page:
                return "I have no notes for you yet."
            return "Your notes:\n" + "\n".join(f"- {r.key} = {_value_text(r.value)}" for r in page)
        if match := _RECALL.match(task):
            query = _key(match["q"])
            ctx.step("recall", query=query)
            record = await facts.get(query)
            found = [record] if record is not None else await self._search(ctx, query)
            if not found:
                return f"I have no notes about {query!r} for you."
            return "From your notes: " + "; ".join(
                f"{r.key} = {_value_text(r.value)}" for r in found
            )
        return await self._summarise(task, ctx)

    @staticmethod
    async def _search(ctx: RunContext, query: str) -> list[Any]:
        """Notes holding the query's first words (a query the search refuses finds none)."""
        words = " ".join(query.split()[:_MAX_SEARCH_TERMS])
        try:
            return list(await ctx.memory.facts.search(words, limit=5))
        except ValueError:  # e.g. nothing left to search for once folded
            return []

    @staticmethod
    async def _summarise(task: str, ctx: RunContext) -> str:
        facts = ctx.memory.facts
        ctx.step("summarise")
        completion = await ctx.complete(
            [
                {
                    "role": "system",
                    "content": "Summarise the user's note in one short line, keep every fact.",
                },
                {"role": "user", "content": task},
            ],
            max_tokens=120,
        )
        summary = " ".join(completion.text.split())
        key = _key(" ".join(task.split()[:5]))
        await facts.put(key, {"value": summary, "note": task[:2000], "runId": ctx.run_id})
        return f"Noted as {key!r}: {summary}"
