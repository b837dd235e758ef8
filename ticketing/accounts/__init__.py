"""Accounts: users, passwords, OAuth2 tokens and API clients, booking history."""
