"""Tickets: signed ticket codes, QR codes and check-in at the door."""
