--[[
  live_hold (fragment, lua/lib/live_hold.lua): a user holds at most one live hold per event.
  Included by the hold scripts' line `--#include live_hold` (stagedoor/lua.py); never loaded or
  called alone.

  live_hold_of(users_key, records_key, user_id, now)
            users_key    sd:{ev:<id>}:holds:users  hash  user_id -> hold_id
            records_key  sd:{ev:<id>}:holds:rec    hash  hold_id -> hold record (lua/hold_record.md)
            The user's current hold id when it is held or locked and not yet expired, else nil.
            Writes nothing.
  Cost      O(1): two HGET
]]
local function live_hold_of(users_key, records_key, user_id, now)
  local current = redis.call('HGET', users_key, user_id)
  if not current then return nil end
  local rec = redis.call('HGET', records_key, current)
  if not rec then return nil end
  local r = cjson.decode(rec)
  if (r.st == 'held' or r.st == 'locked') and r.e > now then return current end
  return nil
end
