--[[
  lock_hold_for_payment: extend a live hold to the end of the payment window so it cannot expire mid-charge;
  refused when the event is no longer sellable (cancelled: ticketing/catalog/events.py writes meta status).

  KEYS[1]   sd:{ev:<id>}:inv:seats        hash  seat_id -> "0" | "s" | "<hold_id>:<expires_ms>"
  KEYS[2]   sd:{ev:<id>}:holds:expiry     zset  hold_id -> expires_ms
  KEYS[3]   sd:{ev:<id>}:holds:rec        hash  hold_id -> hold record (lua/hold_record.md)
  KEYS[4]   sd:{ev:<id>}:inv:meta         hash  status ("on_sale" | "sold_out" | "cancelled" | ...), ...
  ARGV[1]   hold_id
  ARGV[2]   now_ms
  ARGV[3]   window_ms (the hold then expires at max(current expiry, now_ms + window_ms))

  Returns   {"ok", expires_ms}          locked (again: a retried purchase may lock twice)
            {"not_found"}               no record (never existed, purged, or lost with Redis data)
            {"expired"}                 past its expiry (swept or not): nothing written
            {"released"} | {"sold"}     nothing written
            {"not_on_sale", status}     the event's status is neither on_sale nor sold_out: nothing written
            {"seat_lost", seat_id}      a seat no longer points at this hold: nothing written
  Cost      O(seats of the hold)
]]
local hold_id, now, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local raw = redis.call('HGET', KEYS[3], hold_id)
if not raw then return {'not_found'} end
local r = cjson.decode(raw)
if r.st == 'sold' or r.st == 'released' or r.st == 'expired' then return {r.st} end
if r.e <= now then return {'expired'} end
local status = redis.call('HGET', KEYS[4], 'status')
if status and status ~= 'on_sale' and status ~= 'sold_out' then return {'not_on_sale', status} end

local prefix = hold_id .. ':'
if r.k == 's' then
  for _, it in ipairs(r.i) do
    local v = redis.call('HGET', KEYS[1], it[1])
    if not v or string.sub(v, 1, #prefix) ~= prefix then return {'seat_lost', it[1]} end
  end
end

local expires = math.max(r.e, now + window)
if r.k == 's' then
  local value = prefix .. expires
  for _, it in ipairs(r.i) do redis.call('HSET', KEYS[1], it[1], value) end
end
r.st = 'locked'
r.e = expires
redis.call('HSET', KEYS[3], hold_id, cjson.encode(r))
redis.call('ZADD', KEYS[2], expires, hold_id)
return {'ok', expires}
