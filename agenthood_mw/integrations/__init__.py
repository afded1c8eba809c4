"""Framework integrations (extras): LangGraph and LangChain memory, scoped by construction."""
