"""stagedoor ticketing service."""
