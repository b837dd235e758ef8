"""Seat holds: atomic, all-or-nothing, expiring holds in Redis and the holdable inventory."""
