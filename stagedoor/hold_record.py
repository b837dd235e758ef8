"""The fields of the hold record, the JSON object the hold scripts keep per hold in
``sd:{ev:<event_id>}:holds:rec`` (``RedisKeys.hold_records``).

The schema, each field's type and meaning, is lua/hold_record.md; these are its field names for
Python code that reads a record (tests/foundation/test_hold_record.py checks they agree).
"""

from __future__ import annotations

USER = "u"  # user id of the holder
STATE = "st"  # held | locked | sold | released | expired
KIND = "k"  # KIND_SEATS | KIND_GENERAL_ADMISSION
TIER = "t"  # general admission: the tier code; seats: ""
UNIT_PRICE = "p"  # general admission only: unit price, minor units
QUANTITY = "q"  # tickets held
ITEMS = "i"  # seats: [seat_id, tier, price] per seat; general admission: empty
TOTAL = "tot"  # minor units
CURRENCY = "cur"
CREATED_MS = "c"
EXPIRES_MS = "e"
ADMISSION = "a"  # holds placed with an admission token: its jti; absent otherwise
OFFER = "w"  # waiting-list offers (lua/hold_for_offer.lua): the offer id; absent otherwise

FIELDS = (USER, STATE, KIND, TIER, UNIT_PRICE, QUANTITY, ITEMS, TOTAL, CURRENCY, CREATED_MS, EXPIRES_MS, ADMISSION,
          OFFER)

KIND_SEATS = "s"
KIND_GENERAL_ADMISSION = "g"
STATES = ("held", "locked", "sold", "released", "expired")
