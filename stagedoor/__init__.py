"""stagedoor: shared plumbing for the waiting room, ticketing and admission services."""

__version__ = "0.1.0"
