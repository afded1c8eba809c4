"""Implementation of the ``agenthood`` command (entry point: :mod:`agenthood_mw.cli`)."""
