"""stagedoor admission service."""
