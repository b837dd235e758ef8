--[[
  hold_for_offer: hold tickets that came back to a sold-out event for the next fan on its waiting
  list, as much of what they want as is free (an offer, docs/waitlist.md). The waiting list is the
  gate: no admission token, and the event's status must be "sold_out" (which refuses every ordinary
  hold), so nobody outside the list can take these tickets.

  KEYS[1]   sd:{ev:<id>}:inv:meta          hash  status, currency, max_per_order, hold_ttl_ms, gen
  KEYS[2]   sd:{ev:<id>}:inv:tiers         hash  p:<tier> price, f:<tier> free, ga:<tier> "1"
  KEYS[3]   sd:{ev:<id>}:inv:seats         hash  seat_id -> "0" | "s" | "<hold_id>:<expires_ms>"
  KEYS[4]   sd:{ev:<id>}:inv:seat_tiers    hash  seat_id -> tier
  KEYS[5]   sd:{ev:<id>}:holds:expiry      zset  hold_id -> expires_ms
  KEYS[6]   sd:{ev:<id>}:holds:rec         hash  hold_id -> hold record (lua/hold_record.md)
  KEYS[7]   sd:{ev:<id>}:holds:users       hash  user_id -> hold_id
  KEYS[8]   sd:{ev:<id>}:holds:done        zset  hold_id -> finished_ms
  KEYS[9]   sd:{ev:<id>}:holds:expired_log list  hold ids reclaimed as expired, to announce
  ARGV[1]   hold_id (new)
  ARGV[2]   user_id (the waiting-list entry's account)
  ARGV[3]   now_ms
  ARGV[4]   expires_ms: the offer's claim deadline (> now_ms)
  ARGV[5]   wanted: the entry's quantity (>= 1)
  ARGV[6]   offer id (written to the record's "w")
  ARGV[7]   at most this many expired holds are reclaimed first
  ARGV[8]   "g": ARGV[9..] are general-admission tier codes, in order of preference
            "s": ARGV[9..] are seat ids to try, in order (the seats that came back)

  Returns   {"ok", quantity, total, currency, tier, seat1, tier1, price1, seat2, ...}
              general admission: tier is the tier held (quantity = min(wanted, its free), the first
              tier with all wanted free, else the one with most free) and no seat triples;
              seats: tier is "" and one triple per seat held (the first min(wanted, free) free seats)
            {"not_loaded"}                  the inventory is not in Redis (rebuild, try again)
            {"not_sold_out", status}        the event is not sold out: nothing written
            {"active_hold", hold_id}        the user holds tickets of this event: nothing written
            {"none_free"}                   none of the candidates is free: nothing written but reclaims
            Expired holds are reclaimed first (as the sweeper would: seats freed, counters restored,
            hold id logged for BookingExpired); that changes no holdable state, so a refusal still
            changes nothing a buyer could see.
  Cost      O(candidates + reclaimed holds x their seats)
  Includes  live_hold (lua/lib/live_hold.lua): live_hold_of;
            reclaim (lua/lib/reclaim.lua): reclaim gives each expired hold back
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_loaded'} end
local meta = redis.call('HMGET', KEYS[1], 'status', 'currency')
if meta[1] ~= 'sold_out' then return {'not_sold_out', meta[1] or ''} end
local hold_id, user_id, now, expires = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local wanted, kind = tonumber(ARGV[5]), ARGV[8]
if wanted < 1 or expires <= now or (kind ~= 'g' and kind ~= 's') then
  return redis.error_reply('hold_for_offer: bad arguments')
end

--#include live_hold
local current = live_hold_of(KEYS[7], KEYS[6], user_id, now)
if current then return {'active_hold', current} end

--#include reclaim
local hold_keys = {tiers = KEYS[2], seats = KEYS[3], expiry = KEYS[5], records = KEYS[6], users = KEYS[7],
                   done = KEYS[8], expired_log = KEYS[9]}
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, tonumber(ARGV[7]))
for _, hid in ipairs(expired) do reclaim(hold_keys, hid, now) end

local record
local reply
if kind == 'g' then
  local best, best_free = nil, 0
  for i = 9, #ARGV do
    local t = redis.call('HMGET', KEYS[2], 'ga:' .. ARGV[i], 'f:' .. ARGV[i])
    local free = tonumber(t[2] or '0')
    if t[1] == '1' and free > best_free then
      best, best_free = ARGV[i], free
      if free >= wanted then break end
    end
  end
  if not best then return {'none_free'} end
  local qty = math.min(wanted, best_free)
  local price = tonumber(redis.call('HGET', KEYS[2], 'p:' .. best))
  redis.call('HINCRBY', KEYS[2], 'f:' .. best, -qty)
  record = {u = user_id, st = 'held', k = 'g', t = best, p = price, q = qty, i = {}, tot = price * qty,
            cur = meta[2], c = now, e = expires, w = ARGV[6]}
  reply = {'ok', qty, price * qty, meta[2], best}
else
  local value = hold_id .. ':' .. expires
  local items, total = {}, 0
  reply = {'ok', 0, 0, meta[2], ''}
  for i = 9, #ARGV do
    if #items >= wanted then break end
    local seat = ARGV[i]
    local v = redis.call('HGET', KEYS[3], seat)
    local free = v == '0'
    if v and v ~= '0' and v ~= 's' then
      free = tonumber(string.match(v, ':(%d+)$')) <= now  -- an expired hold's seat (not counted free)
    end
    if free then
      local tier = redis.call('HGET', KEYS[4], seat)
      local price = tonumber(redis.call('HGET', KEYS[2], 'p:' .. tier))
      if v == '0' then redis.call('HINCRBY', KEYS[2], 'f:' .. tier, -1) end
      redis.call('HSET', KEYS[3], seat, value)
      total = total + price
      items[#items + 1] = {seat, tier, price}
      reply[#reply + 1] = seat
      reply[#reply + 1] = tier
      reply[#reply + 1] = price
    end
  end
  if #items == 0 then return {'none_free'} end
  reply[2], reply[3] = #items, total
  record = {u = user_id, st = 'held', k = 's', t = '', q = #items, i = items, tot = total, cur = meta[2],
            c = now, e = expires, w = ARGV[6]}
end
redis.call('HSET', KEYS[6], hold_id, cjson.encode(record))
redis.call('ZADD', KEYS[5], expires, hold_id)
redis.call('HSET', KEYS[7], user_id, hold_id)
return reply
