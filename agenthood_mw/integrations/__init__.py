"""Adapters that put agenthood's scoped memory under agent frameworks (each an extra).

``agenthood_mw.integrations.langgraph`` (extra ``[langgraph]``): a scoped LangGraph checkpointer
and an ``Agent`` adapter serving a compiled graph. Nothing here is imported by
``import agenthood_mw``; each module imports its framework only when it is imported itself.
"""
