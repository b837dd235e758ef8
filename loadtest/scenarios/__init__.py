"""Scenario modules driven by ``loadtest.bench`` (one per figure family; see loadtest/README.md).

Modules whose name starts with ``_`` are helpers, not scenarios.
"""
