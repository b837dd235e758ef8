--[[
  hold_seats: hold every requested seat for one new hold, or none of them.

  KEYS[1]   sd:{ev:<id>}:inv:meta         hash  status, currency, max_per_order, hold_ttl_ms, gen
  KEYS[2]   sd:{ev:<id>}:inv:tiers        hash  p:<tier> price, f:<tier> free count, ...
  KEYS[3]   sd:{ev:<id>}:inv:seats        hash  seat_id -> "0" | "s" | "<hold_id>:<expires_ms>"
  KEYS[4]   sd:{ev:<id>}:inv:seat_tiers   hash  seat_id -> tier
  KEYS[5]   sd:{ev:<id>}:holds:expiry     zset  hold_id -> expires_ms
  KEYS[6]   sd:{ev:<id>}:holds:rec        hash  hold_id -> hold record (lua/hold_record.md)
  KEYS[7]   sd:{ev:<id>}:holds:users      hash  user_id -> hold_id
  KEYS[8]   sd:{ev:<id>}:room             string, present when a waiting room gates the event
  KEYS[9]   sd:{ev:<id>}:adm:<jti>        hash  u owner user id, n tickets bought (with ARGV[5] only)
  ARGV[1]   hold_id (new)
  ARGV[2]   user_id
  ARGV[3]   now_ms
  ARGV[4]   "1" when the caller presented a valid admission token for this event, else "0"
  ARGV[5]   the admission token's jti when ARGV[4] is "1", else ""
  ARGV[6]   ms to keep the admission's binding when it is new (the token's lifetime left + a grace)
  ARGV[7..] seat_id, ... (distinct)

  Returns   {"ok", expires_ms, total, currency, tier1, price1, tier2, price2, ...}  (per seat, in order)
            {"not_loaded"}                  inventory absent (Redis lost it): rebuild, retry
            {"admission_required"}          gated event and no valid admission token
            {"not_on_sale", status}
            {"over_limit", max_per_order}
            {"admission_in_use"}            the admission is bound to another user
            {"admission_limit", max_per_order, bought}   seats + tickets bought through the
                                            admission would pass max_per_order
            {"duplicate_seat", seat_id}
            {"active_hold", hold_id}        the user already has a live hold on this event
            {"unknown_seats", seat_id, ...}
            {"seat_unavailable", seat_id, ...}   every seat held by a live hold or sold
            Nothing is written unless the reply is "ok". A seat of an expired hold counts as free.
            An admission (ARGV[5]) is bound to the first user who holds with it: KEYS[9] is created
            with u = user, n = 0 and a PEXPIRE of ARGV[6]; confirm_hold_sold counts n.
  Cost      O(number of seats requested)
  Includes  live_hold (lua/lib/live_hold.lua): live_hold_of;
            admission_binding (lua/lib/admission_binding.lua): check_binding, bind
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_loaded'} end
local meta = redis.call('HMGET', KEYS[1], 'status', 'currency', 'max_per_order', 'hold_ttl_ms')
if ARGV[4] ~= '1' and redis.call('EXISTS', KEYS[8]) == 1 then return {'admission_required'} end
if meta[1] ~= 'on_sale' then return {'not_on_sale', meta[1] or ''} end
local n = #ARGV - 6
if n < 1 or n > tonumber(meta[3]) then return {'over_limit', meta[3]} end

local hold_id, user_id, now, jti = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[5]
--#include admission_binding
local bound, refusal = check_binding(KEYS[9], jti, user_id, n, meta[3])
if refusal then return refusal end

local seen = {}
for i = 7, #ARGV do
  if seen[ARGV[i]] then return {'duplicate_seat', ARGV[i]} end
  seen[ARGV[i]] = true
end

--#include live_hold
local current = live_hold_of(KEYS[7], KEYS[6], user_id, now)
if current then return {'active_hold', current} end

local states = redis.call('HMGET', KEYS[3], unpack(ARGV, 7))
local unknown, taken = {}, {}
for i, v in ipairs(states) do
  local seat = ARGV[i + 6]
  if not v then
    unknown[#unknown + 1] = seat
  elseif v == 's' then
    taken[#taken + 1] = seat
  elseif v ~= '0' then
    local exp = tonumber(string.match(v, ':(%d+)$'))
    if exp > now then taken[#taken + 1] = seat end
  end
end
if #unknown > 0 then return {'unknown_seats', unpack(unknown)} end
if #taken > 0 then return {'seat_unavailable', unpack(taken)} end

-- every check passed: write
local tiers = redis.call('HMGET', KEYS[4], unpack(ARGV, 7))
local expires = now + tonumber(meta[4])
local value = hold_id .. ':' .. expires
local total = 0
local items, reply = {}, {'ok', expires, 0, meta[2]}
for i, v in ipairs(states) do
  local seat, tier = ARGV[i + 6], tiers[i]
  local price = tonumber(redis.call('HGET', KEYS[2], 'p:' .. tier))
  if v == '0' then redis.call('HINCRBY', KEYS[2], 'f:' .. tier, -1) end  -- an expired hold's seat was already not free
  redis.call('HSET', KEYS[3], seat, value)
  total = total + price
  items[i] = {seat, tier, price}
  reply[#reply + 1] = tier
  reply[#reply + 1] = price
end
reply[3] = total
redis.call('HSET', KEYS[6], hold_id, cjson.encode({
  u = user_id, st = 'held', k = 's', t = '', q = n, i = items, tot = total, cur = meta[2], c = now, e = expires,
  a = bound and jti or nil}))
redis.call('ZADD', KEYS[5], expires, hold_id)
redis.call('HSET', KEYS[7], user_id, hold_id)
bind(KEYS[9], bound, user_id, ARGV[6])
return reply
