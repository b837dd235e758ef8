"""Load generation, raw limits and ``make bench`` (see loadtest/README.md)."""
