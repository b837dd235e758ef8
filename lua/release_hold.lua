--[[
  release_hold: give a hold's seats (or general-admission tickets) back to sale, at its owner's request.

  KEYS[1]   sd:{ev:<id>}:inv:tiers        hash  f:<tier> free counters
  KEYS[2]   sd:{ev:<id>}:inv:seats        hash  seat_id -> "0" | "s" | "<hold_id>:<expires_ms>"
  KEYS[3]   sd:{ev:<id>}:holds:expiry     zset  hold_id -> expires_ms
  KEYS[4]   sd:{ev:<id>}:holds:rec        hash  hold_id -> JSON record
  KEYS[5]   sd:{ev:<id>}:holds:users      hash  user_id -> hold_id
  KEYS[6]   sd:{ev:<id>}:holds:done       zset  hold_id -> finished_ms
  ARGV[1]   hold_id
  ARGV[2]   now_ms

  Returns   {"ok"}                 released (seats still pointing at this hold freed, counters restored)
            {"not_found"}          no record (never existed, purged, or lost with Redis data)
            {"locked"}             a payment is in progress (locked and not yet expired): nothing written
            {"sold"}               already purchased: nothing written
            {"gone", state}        already released or expired: nothing written
  Cost      O(seats of the hold)
]]
local hold_id, now = ARGV[1], tonumber(ARGV[2])
local raw = redis.call('HGET', KEYS[4], hold_id)
if not raw then return {'not_found'} end
local r = cjson.decode(raw)
if r.st == 'sold' then return {'sold'} end
if r.st == 'released' or r.st == 'expired' then return {'gone', r.st} end
if r.st == 'locked' and r.e > now then return {'locked'} end

if r.k == 's' then
  local prefix = hold_id .. ':'
  for _, it in ipairs(r.i) do
    local v = redis.call('HGET', KEYS[2], it[1])
    if v and string.sub(v, 1, #prefix) == prefix then
      redis.call('HSET', KEYS[2], it[1], '0')
      redis.call('HINCRBY', KEYS[1], 'f:' .. it[2], 1)
    end
  end
else
  redis.call('HINCRBY', KEYS[1], 'f:' .. r.t, r.q)
end
r.st = 'released'
redis.call('HSET', KEYS[4], hold_id, cjson.encode(r))
redis.call('ZREM', KEYS[3], hold_id)
if redis.call('HGET', KEYS[5], r.u) == hold_id then redis.call('HDEL', KEYS[5], r.u) end
redis.call('ZADD', KEYS[6], now, hold_id)
return {'ok'}
