"""Errors of the accounts work (users, passwords, API clients). OAuth2 token endpoint errors
are not problem+json (RFC 6749 section 5.2): they live in ``ticketing/accounts/oauth.py``.
"""

from __future__ import annotations

from stagedoor.errors import Conflict, Forbidden, InvalidInput, NotFound


class EmailTaken(Conflict):
    code = "email-taken"
    title = "An account with this email already exists"


class WeakPassword(InvalidInput):
    code = "weak-password"
    title = "Password does not meet the password rules"

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons), errors=[{"field": "password", "message": r} for r in reasons])


class InvalidEmail(InvalidInput):
    code = "invalid-email"
    title = "Invalid email address"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, errors=[{"field": "email", "message": detail}])


class InvalidRoles(InvalidInput):
    code = "invalid-roles"
    title = "Invalid roles"


class UserNotFound(NotFound):
    code = "user-not-found"
    title = "No such user"


class NotAUserAccount(Forbidden):
    code = "not-a-user-account"
    title = "This needs a user account token"


class ClientNotFound(NotFound):
    code = "client-not-found"
    title = "No such API client"
