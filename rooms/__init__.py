"""Shared room state: the waiting room, the admission controller and ticketing all read and
change rooms through this package (room config, queue, shopper sessions); none of the three
services imports another."""
