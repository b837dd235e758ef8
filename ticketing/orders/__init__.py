"""Orders: the purchase, idempotency keys, discount codes, order reads and sell-out detection."""
