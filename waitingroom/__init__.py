"""stagedoor waitingroom service."""
