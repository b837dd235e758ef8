--[[
  reclaim (fragment, lua/lib/reclaim.lua): give a hold's seats or tickets back to sale. Included
  by a script's line `--#include reclaim` (stagedoor/lua.py); never loaded or called alone.

  k         the script's keys by role (each from the including script's KEYS):
              tiers        sd:{ev:<id>}:inv:tiers          hash  f:<tier> free counters
              seats        sd:{ev:<id>}:inv:seats          hash  seat_id -> "0" | "s" | "<hold_id>:<expires_ms>"
              expiry       sd:{ev:<id>}:holds:expiry       zset  hold_id -> expires_ms
              records      sd:{ev:<id>}:holds:rec          hash  hold_id -> hold record (lua/hold_record.md)
              users        sd:{ev:<id>}:holds:users        hash  user_id -> hold_id
              done         sd:{ev:<id>}:holds:done         zset  hold_id -> finished_ms
              expired_log  sd:{ev:<id>}:holds:expired_log  list  hold ids reclaimed as expired (reclaim only)

  give_back(k, hold_id, r, state, now)   r: the decoded record of a held or locked hold
            Frees the seats still pointing at the hold (a seat sold or held by another since is
            left alone) and restores their tiers' free counters, or the tier's counter by the
            record's quantity for general admission; records the new state ("released",
            "expired"); drops the hold from the expiry zset and, when it is still the user's
            current hold, the user marker; notes it finished at now (purged later).
  reclaim(k, hold_id, now)
            give_back(..., "expired", ...) of an expired hold, and its id queued on the expired
            log for the BookingExpired announcement; a hold without a record only leaves the
            expiry zset.
  Cost      O(seats of the hold)
]]
local function give_back(k, hold_id, r, state, now)
  if r.k == 's' then
    local prefix = hold_id .. ':'
    for _, it in ipairs(r.i) do
      local v = redis.call('HGET', k.seats, it[1])
      if v and string.sub(v, 1, #prefix) == prefix then
        redis.call('HSET', k.seats, it[1], '0')
        redis.call('HINCRBY', k.tiers, 'f:' .. it[2], 1)
      end
    end
  else
    redis.call('HINCRBY', k.tiers, 'f:' .. r.t, r.q)
  end
  r.st = state
  redis.call('HSET', k.records, hold_id, cjson.encode(r))
  redis.call('ZREM', k.expiry, hold_id)
  if redis.call('HGET', k.users, r.u) == hold_id then redis.call('HDEL', k.users, r.u) end
  redis.call('ZADD', k.done, now, hold_id)
end

local function reclaim(k, hold_id, now)
  local raw = redis.call('HGET', k.records, hold_id)
  if not raw then
    redis.call('ZREM', k.expiry, hold_id)
    return
  end
  give_back(k, hold_id, cjson.decode(raw), 'expired', now)
  redis.call('RPUSH', k.expired_log, hold_id)
end
