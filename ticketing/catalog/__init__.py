"""The catalog: events, venues, price tiers, seat maps; search and the organizer's list."""
