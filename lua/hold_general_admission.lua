--[[
  hold_general_admission: hold N general-admission tickets of one tier for one new hold, or none.

  KEYS[1]   sd:{ev:<id>}:inv:meta          hash  status, currency, max_per_order, hold_ttl_ms, gen
  KEYS[2]   sd:{ev:<id>}:inv:tiers         hash  p:<tier> price, f:<tier> free, ga:<tier> "1"
  KEYS[3]   sd:{ev:<id>}:inv:seats         hash  seat_id -> "0" | "s" | "<hold_id>:<expires_ms>"
  KEYS[4]   sd:{ev:<id>}:holds:expiry      zset  hold_id -> expires_ms
  KEYS[5]   sd:{ev:<id>}:holds:rec         hash  hold_id -> hold record (lua/hold_record.md)
  KEYS[6]   sd:{ev:<id>}:holds:users       hash  user_id -> hold_id
  KEYS[7]   sd:{ev:<id>}:holds:done        zset  hold_id -> finished_ms
  KEYS[8]   sd:{ev:<id>}:holds:expired_log list  hold ids reclaimed as expired, to announce
  KEYS[9]   sd:{ev:<id>}:room              string, present when a waiting room gates the event
  KEYS[10]  sd:{ev:<id>}:adm:<jti>         hash  u owner user id, n tickets bought (with ARGV[8] only)
  ARGV[1]   hold_id (new)
  ARGV[2]   user_id
  ARGV[3]   now_ms
  ARGV[4]   "1" when the caller presented a valid admission token for this event, else "0"
  ARGV[5]   tier code
  ARGV[6]   quantity (>= 1)
  ARGV[7]   at most this many expired holds are reclaimed when the free counter is short
  ARGV[8]   the admission token's jti when ARGV[4] is "1", else ""
  ARGV[9]   ms to keep the admission's binding when it is new (the token's lifetime left + a grace)

  Returns   {"ok", expires_ms, total, currency, unit_price}
            {"not_loaded"} | {"admission_required"} | {"not_on_sale", status}
            {"over_limit", max_per_order} | {"active_hold", hold_id}
            {"admission_in_use"}             the admission is bound to another user
            {"admission_limit", max_per_order, bought}   quantity + tickets bought through the
                                             admission would pass max_per_order
            {"unknown_tier"}                 no such general-admission tier
            {"sold_out", free}               fewer than quantity free
            Expired holds count as free: when the counter is short, expired holds are reclaimed
            first (as the sweeper would: seats freed, counters restored, hold id logged for
            BookingExpired). That changes no holdable state, so a refusal still changes nothing.
            An admission (ARGV[8]) is bound to the first user who holds with it: KEYS[10] is created
            with u = user, n = 0 and a PEXPIRE of ARGV[9]; confirm_hold_sold counts n.
  Cost      O(1), plus O(reclaimed holds x their seats) when the counter is short
  Includes  live_hold (lua/lib/live_hold.lua): live_hold_of;
            reclaim (lua/lib/reclaim.lua): reclaim gives each expired hold back;
            admission_binding (lua/lib/admission_binding.lua): check_binding, bind
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_loaded'} end
local meta = redis.call('HMGET', KEYS[1], 'status', 'currency', 'max_per_order', 'hold_ttl_ms')
if ARGV[4] ~= '1' and redis.call('EXISTS', KEYS[9]) == 1 then return {'admission_required'} end
if meta[1] ~= 'on_sale' then return {'not_on_sale', meta[1] or ''} end
local hold_id, user_id, now, tier = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[5]
local qty = tonumber(ARGV[6])
if qty < 1 or qty > tonumber(meta[3]) then return {'over_limit', meta[3]} end
--#include admission_binding
local jti = ARGV[8]
local bound, refusal = check_binding(KEYS[10], jti, user_id, qty, meta[3])
if refusal then return refusal end
local t = redis.call('HMGET', KEYS[2], 'ga:' .. tier, 'p:' .. tier, 'f:' .. tier)
if t[1] ~= '1' then return {'unknown_tier'} end

--#include live_hold
local current = live_hold_of(KEYS[6], KEYS[5], user_id, now)
if current then return {'active_hold', current} end

--#include reclaim
local hold_keys = {tiers = KEYS[2], seats = KEYS[3], expiry = KEYS[4], records = KEYS[5], users = KEYS[6],
                   done = KEYS[7], expired_log = KEYS[8]}

local free = tonumber(t[3])
if free < qty then
  local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, tonumber(ARGV[7]))
  for _, hid in ipairs(expired) do reclaim(hold_keys, hid, now) end
  free = tonumber(redis.call('HGET', KEYS[2], 'f:' .. tier))
  if free < qty then return {'sold_out', free} end
end

local price = tonumber(t[2])
local expires = now + tonumber(meta[4])
local total = price * qty
redis.call('HINCRBY', KEYS[2], 'f:' .. tier, -qty)
redis.call('HSET', KEYS[5], hold_id, cjson.encode({
  u = user_id, st = 'held', k = 'g', t = tier, p = price, q = qty, i = {}, tot = total, cur = meta[2],
  c = now, e = expires, a = bound and jti or nil}))
redis.call('ZADD', KEYS[4], expires, hold_id)
redis.call('HSET', KEYS[6], user_id, hold_id)
bind(KEYS[10], bound, user_id, ARGV[9])
return {'ok', expires, total, meta[2], price}
