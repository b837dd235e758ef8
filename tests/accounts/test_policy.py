"""stagedoor.policy as a pure table: who may do what to whose resource."""

from __future__ import annotations

import pytest

from stagedoor.auth import ADMIN_KEY_PRINCIPAL, Principal
from stagedoor.errors import Forbidden, Unauthorized
from stagedoor.policy import Action, Resource, authorize, can_ever, is_allowed

ALICE = Principal(kind="user", id="alice", roles=frozenset({"customer"}))
BOB = Principal(kind="user", id="bob", roles=frozenset({"customer"}))
ORG = Principal(kind="user", id="org", roles=frozenset({"customer", "organizer"}))
RIVAL = Principal(kind="user", id="rival", roles=frozenset({"organizer"}))
ADMIN = Principal(kind="user", id="root", roles=frozenset({"admin"}))
SCANNER = Principal(kind="client", id="cl_1", roles=frozenset({"organizer"}), scopes=frozenset({"checkin"}),
                    on_behalf_of="org")
SRE = Principal(kind="client", id="cl_2", roles=frozenset({"admin"}), scopes=frozenset({"admin"}))
ORGS_EVENT = Resource(owner_id="org", organizer_id="org")
ALICES_ORDER = Resource(owner_id="alice", organizer_id="org")

CASES = [
    (ALICE, Action.HOLD_CREATE, None, True),
    (ALICE, Action.HOLD_READ, Resource(owner_id="alice"), True),
    (BOB, Action.HOLD_READ, Resource(owner_id="alice"), False),
    (ORG, Action.HOLD_READ, Resource(owner_id="alice", organizer_id="org"), False),
    (ALICE, Action.ORDER_READ, ALICES_ORDER, True),
    (BOB, Action.ORDER_READ, ALICES_ORDER, False),
    (ORG, Action.ORDER_READ, ALICES_ORDER, True),
    (RIVAL, Action.ORDER_READ, ALICES_ORDER, False),
    (ALICE, Action.EVENT_CREATE, None, False),
    (ORG, Action.EVENT_CREATE, Resource(organizer_id="org"), True),  # an event of their own
    (ORG, Action.EVENT_CREATE, Resource(organizer_id="rival"), False),  # only admins create for others
    (ORG, Action.EVENT_UPDATE, ORGS_EVENT, True),
    (RIVAL, Action.EVENT_UPDATE, ORGS_EVENT, False),
    (RIVAL, Action.ROOM_MANAGE, ORGS_EVENT, False),
    (ORG, Action.ROOM_MANAGE, ORGS_EVENT, True),
    (ORG, Action.EVENT_UPDATE, Resource(), False),  # unknown owner: never assume
    (ADMIN, Action.EVENT_UPDATE, ORGS_EVENT, True),
    (ADMIN, Action.USER_MANAGE, None, True),
    (ORG, Action.USER_MANAGE, None, False),
    (ADMIN_KEY_PRINCIPAL, Action.ROOM_LIST, None, True),
    (ORG, Action.ROOM_LIST, None, True),
    (ALICE, Action.ROOM_LIST, None, False),
    (SCANNER, Action.ROOM_LIST, None, False),
    (ADMIN_KEY_PRINCIPAL, Action.PROFILE_READ, None, False),  # the admin key has no account
    (ADMIN_KEY_PRINCIPAL, Action.HOLD_CREATE, None, False),
    (SRE, Action.HOLD_CREATE, None, False),  # clients never shop, whatever their scopes
    (SCANNER, Action.CHECKIN, ORGS_EVENT, True),
    (SCANNER, Action.CHECKIN, Resource(organizer_id="rival"), False),
    (SCANNER, Action.SALES_READ, ORGS_EVENT, False),  # no sales:read scope
    (SCANNER, Action.EVENT_UPDATE, ORGS_EVENT, False),
    (SCANNER, Action.HOLD_CREATE, None, False),  # clients do not shop
    (SCANNER, Action.PROFILE_READ, None, False),
    (SRE, Action.ROOM_MANAGE, ORGS_EVENT, True),
    (SRE, Action.USER_MANAGE, None, True),
]


@pytest.mark.parametrize(("principal", "action", "resource", "allowed"), CASES,
                         ids=[f"{p.id}-{a.value}-{i}" for i, (p, a, _, _) in enumerate(CASES)])
def test_policy_table(principal: Principal, action: Action, resource: Resource | None, allowed: bool) -> None:
    assert is_allowed(principal, action, resource or Resource()) is allowed


def test_an_admin_scope_does_not_lift_a_non_admin_owners_client() -> None:
    client = Principal(kind="client", id="cl_3", roles=frozenset({"organizer"}), scopes=frozenset({"admin"}),
                       on_behalf_of="org")
    assert not is_allowed(client, Action.USER_MANAGE)


def test_authorize_raises_401_without_and_403_with_a_principal() -> None:
    with pytest.raises(Unauthorized):
        authorize(None, Action.PROFILE_READ)
    with pytest.raises(Forbidden):
        authorize(ALICE, Action.USER_MANAGE)
    assert authorize(ADMIN, Action.USER_MANAGE) is ADMIN


def test_every_action_is_decided() -> None:
    """No action falls through to the default deny by accident: admins may do every one (buying
    only their own holds: nobody buys another user's hold)."""
    for action in Action:
        assert can_ever(ADMIN, action)
        assert is_allowed(ADMIN, action, Resource(owner_id="root", organizer_id="someone"))
        assert is_allowed(ADMIN, action) is (action is not Action.PURCHASE)


def test_a_door_scanner_of_an_admin_checks_in_anywhere_and_does_nothing_else() -> None:
    """A client's rights: its owner's roles (admin) narrowed by its scopes (checkin)."""
    scanner = Principal(kind="client", id="cl_4", roles=frozenset({"admin"}), scopes=frozenset({"checkin"}),
                        on_behalf_of="root")
    assert is_allowed(scanner, Action.CHECKIN, Resource(organizer_id="anyone"))
    for action in Action:
        if action is not Action.CHECKIN:
            assert not can_ever(scanner, action), action


def test_the_admin_scope_opens_no_scopeless_action_to_a_non_admins_client() -> None:
    """"admin" stands for every scope; actions without one (holds, profiles) stay closed to a
    customer's or an organizer's client."""
    for owner, roles in (("alice", {"customer"}), ("org", {"organizer"})):
        client = Principal(kind="client", id="cl_5", roles=frozenset(roles), scopes=frozenset({"admin"}),
                           on_behalf_of=owner)
        assert not can_ever(client, Action.HOLD_READ)
        assert not is_allowed(client, Action.HOLD_RELEASE, Resource(owner_id=owner))
    organizers = Principal(kind="client", id="cl_6", roles=frozenset({"organizer"}), scopes=frozenset({"admin"}),
                           on_behalf_of="org")
    assert is_allowed(organizers, Action.CHECKIN, ORGS_EVENT) and is_allowed(organizers, Action.ORDER_READ,
                                                                               ALICES_ORDER)


def test_before_any_lookup_only_the_role_and_scope_count() -> None:
    assert can_ever(RIVAL, Action.CHECKIN)  # may check in somewhere: the ticket decides
    assert not is_allowed(RIVAL, Action.CHECKIN, ORGS_EVENT)
    assert not can_ever(ALICE, Action.CHECKIN)  # a customer: 403 whatever the code
    assert can_ever(ALICE, Action.HOLD_READ) and not is_allowed(ALICE, Action.HOLD_READ)
    assert not can_ever(SCANNER, Action.HOLD_READ)
