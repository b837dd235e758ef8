--[[
  confirm_hold_sold: mirror a sale already committed in PostgreSQL: the hold's seats (or tickets) become sold.

  PostgreSQL is the truth, so this never refuses: the seats and tier come from the caller (the
  committed order), not only from the record, which may have expired or been lost with a rebuild.

  KEYS[1]   sd:{ev:<id>}:inv:tiers        hash  f:<tier> free, s:<tier> sold counters
  KEYS[2]   sd:{ev:<id>}:inv:seats        hash  seat_id -> "0" | "s" | "<hold_id>:<expires_ms>"
  KEYS[3]   sd:{ev:<id>}:inv:seat_tiers   hash  seat_id -> tier
  KEYS[4]   sd:{ev:<id>}:holds:expiry     zset  hold_id -> expires_ms
  KEYS[5]   sd:{ev:<id>}:holds:rec        hash  hold_id -> hold record (lua/hold_record.md)
  KEYS[6]   sd:{ev:<id>}:holds:users      hash  user_id -> hold_id
  KEYS[7]   sd:{ev:<id>}:holds:done       zset  hold_id -> finished_ms
  KEYS[8]   sd:{ev:<id>}:adm:<jti>        hash  u, n: the admission the hold was placed with (only
                                                when its record names one, field a)
  ARGV[1]   hold_id
  ARGV[2]   now_ms
  ARGV[3]   general-admission tier code, or "" for seats
  ARGV[4]   general-admission quantity, or 0
  ARGV[5..] seat_id, ... (seated holds)

  Returns   {"ok", overtaken_seat_id, ...}   sold; listed seats were in another live hold (that hold
                                             keeps its record; its purchase fails on PostgreSQL's
                                             unique constraint)
            {"already"}                      the record already says sold: nothing written
            The tickets sold are added to n of the hold's admission (KEYS[8], when the record names
            it and the binding has not expired), so the hold scripts can cap what one admission buys.
  Cost      O(seats of the hold)
]]
local hold_id, now, ga_tier, ga_qty = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local raw = redis.call('HGET', KEYS[5], hold_id)
local r = raw and cjson.decode(raw)
if r and r.st == 'sold' then return {'already'} end
-- Tickets still counted as held (not free) by this hold: a live or unswept record.
local counted_held = r and (r.st == 'held' or r.st == 'locked')

local overtaken = {}
local prefix = hold_id .. ':'
for i = 5, #ARGV do
  local seat = ARGV[i]
  local v = redis.call('HGET', KEYS[2], seat)
  if v and v ~= 's' then
    local tier = redis.call('HGET', KEYS[3], seat)
    if v == '0' then
      redis.call('HINCRBY', KEYS[1], 'f:' .. tier, -1)
    elseif string.sub(v, 1, #prefix) ~= prefix then
      local exp = tonumber(string.match(v, ':(%d+)$'))
      if exp > now then overtaken[#overtaken + 1] = seat end
    end
    redis.call('HSET', KEYS[2], seat, 's')
    redis.call('HINCRBY', KEYS[1], 's:' .. tier, 1)
  end
end
if ga_tier ~= '' and ga_qty > 0 then
  if not counted_held then
    local free = tonumber(redis.call('HGET', KEYS[1], 'f:' .. ga_tier) or '0')
    redis.call('HSET', KEYS[1], 'f:' .. ga_tier, math.max(0, free - ga_qty))
  end
  redis.call('HINCRBY', KEYS[1], 's:' .. ga_tier, ga_qty)
end
if r then
  r.st = 'sold'
  redis.call('HSET', KEYS[5], hold_id, cjson.encode(r))
  if r.a and KEYS[8] and string.sub(KEYS[8], -(#r.a + 5)) == ':adm:' .. r.a
      and redis.call('HEXISTS', KEYS[8], 'u') == 1 then
    local sold = #ARGV - 4
    if ga_tier ~= '' and ga_qty > 0 then sold = sold + ga_qty end
    redis.call('HINCRBY', KEYS[8], 'n', sold)
  end
  if redis.call('HGET', KEYS[6], r.u) == hold_id then redis.call('HDEL', KEYS[6], r.u) end
end
redis.call('ZREM', KEYS[4], hold_id)
redis.call('ZADD', KEYS[7], now, hold_id)
return {'ok', unpack(overtaken)}
