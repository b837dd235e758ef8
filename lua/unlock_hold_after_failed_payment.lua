--[[
  unlock_hold_after_failed_payment: a charge failed (declined card, gateway down), so the hold
  goes back from the payment window to the expiry it had before lock_hold_for_payment. The fan
  may retry with another card until then; a fan who walks away no longer blocks the seats for
  the whole payment window. Never extends a hold; an expiry already past frees the seats at once
  (expired holds count as free; the sweeper announces BookingExpired).

  KEYS[1]   sd:{ev:<id>}:inv:seats        hash  seat_id -> "0" | "s" | "<hold_id>:<expires_ms>"
  KEYS[2]   sd:{ev:<id>}:holds:expiry     zset  hold_id -> expires_ms
  KEYS[3]   sd:{ev:<id>}:holds:rec        hash  hold_id -> hold record (lua/hold_record.md)
  ARGV[1]   hold_id
  ARGV[2]   expires_ms the hold had before it was locked

  Returns   {"ok", expires_ms}            back to "held" with min(current expiry, ARGV[2])
            {"not_found"}                 no record
            {"held"} | {"sold"} | {"released"} | {"expired"}   not locked: nothing written
  Cost      O(seats of the hold)
]]
local hold_id, before = ARGV[1], tonumber(ARGV[2])
local raw = redis.call('HGET', KEYS[3], hold_id)
if not raw then return {'not_found'} end
local r = cjson.decode(raw)
if r.st ~= 'locked' then return {r.st} end

local expires = math.min(r.e, before)
if r.k == 's' then
  local prefix = hold_id .. ':'
  local value = prefix .. expires
  for _, it in ipairs(r.i) do
    local v = redis.call('HGET', KEYS[1], it[1])
    if v and string.sub(v, 1, #prefix) == prefix then redis.call('HSET', KEYS[1], it[1], value) end
  end
end
r.st = 'held'
r.e = expires
redis.call('HSET', KEYS[3], hold_id, cjson.encode(r))
redis.call('ZADD', KEYS[2], expires, hold_id)
return {'ok', expires}
