"""Live sales for organizers: dashboard counters kept from the event bus, and their reads."""
