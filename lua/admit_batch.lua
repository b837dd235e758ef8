--[[
  admit_batch: one admission tick of one room. Refills the room's token bucket (its state is
  in Redis, so any number of controller replicas together admit exactly `rate` per second),
  ends expired shopper sessions, then moves visitors from the front of the queue into the
  active set while tokens and capacity last, dropping abandoned visitors (no heartbeat bit in
  any of the recent time buckets) without spending a token on them.

  Abandonment is judged only on a heard window: every complete bucket of it (all but the newest)
  holds a bit, that is some visitor's heartbeat (a join, a status poll or an event stream's read
  that reached a waiting-room process and was written). A dark bucket means no fan at all was
  heard then: the fans could not reach us (an ingress or CDN outage), or the waiting room or
  Redis was down or refused writes (an outage longer than abandon_after_s would otherwise drop
  the whole queue at the first tick after it). A visitor without a bit in an unheard window is
  neither dropped nor admitted (they may have closed the tab): the tick stops at them, keeping
  FIFO, until they are heard again (the pages poll through an outage) or other fans are heard
  through a whole window and they are dropped.

  Stock-aware admission (docs/admission.md "Admission and the stock"): when the caller passes the
  event's free tickets (ARGV[7], read from the inventory's slot just before: lua/event_stock.lua),
  the tick never lets the shoppers still choosing exceed what the free tickets serve:
      floor(stock_factor x free x (hold_count + 4) / (hold_tickets + 4)), at least 1 while free > 0
  that is stock_factor x free over the room's mean tickets per hold so far (hold_count and
  hold_tickets, counted at each hold; four pseudo-holds of one ticket stand in until holds are
  seen); the last tickets, fewer than a mean hold, still go to one fan at a time.
  A shopper is choosing from admission until they hold (ticketing takes them out of KEYS[5]:
  lua/shopper_held.lua), their session ends, or their reserve passes: twice the time in which nine
  in ten of the room's admitted fans held (learned once ten holds were seen, at least 4 s), at most
  reserve_ms and the session (a fan who left without holding stops counting then). A shopper who
  holds needs no free ticket any more: theirs are out of the free count already. While the bound
  admits nobody and visitors wait, the state's all_held is "1" (every waiting visitor's status
  then reads reason "all_held"); the next tick that finds room again admits in queue order.

  KEYS[1]    sd:{room:<r>}:cfg       hash  mode starts_at closes_at rate max_active ttl_ms abandon_ms paused
                                           stock_factor reserve_ms
  KEYS[2]    sd:{room:<r>}:st        hash  tokens ts_ms sold_out admitted_total abandoned_total rate_ewma rate_ts_ms
                                           all_held stock_free stock_held hold_count hold_tickets
                                           tth:<b> (lua/shopper_held.lua) reserve_eff_ms
  KEYS[3]    sd:{room:<r>}:wait      zset  visitor_id -> order score
  KEYS[4]    sd:{room:<r>}:active    zset  visitor_id -> session expiry ms
  KEYS[5]    sd:{room:<r>}:choosing  zset  visitor_id -> admitted at ms (admitted, not held yet)
  KEYS[6..]  sd:{room:<r>}:seen:<b>  heartbeat bitmaps, newest bucket first (as many as the
                                     largest abandon_ms needs; the script uses what it needs)
  ARGV[1]    now_ms
  ARGV[2]    max_batch: most visitors admitted by one call
  ARGV[3]    max_scan: most abandoned visitors dropped by one call
  ARGV[4]    tau_ms: time constant of the measured admission rate (EWMA)
  ARGV[5]    burst_s: the bucket holds at most max(1, rate * burst_s) tokens
  ARGV[6]    bucket_ms: length of one heartbeat time bucket
  ARGV[7]    the event's free tickets (neither held nor sold), or "" when the room admits by rate
             only (no event linked, or its inventory is not loaded)
  ARGV[8]    the event's held tickets (kept in the state for the admin view), or ""

  Returns    {outcome, admitted, abandoned, sessions_expired, waiting, active, unheard, all_held}
             outcome: "ok" | "idle" (mode closed, paused, sold out, before starts_at or after
             closes_at: nothing admitted, tokens keep accruing up to the burst) | "no_room"
             unheard: 1 when the tick stopped at a visitor it could not judge (see above), else 0
             all_held: 1 when the stock bound admitted nobody while visitors wait, else 0
  Includes   stock_bound (lua/lib/stock_bound.lua): serves
  Cost       O((admitted + abandoned) * (log N + buckets)) + O(expired sessions); O(buckets) more
             once when a visitor without a heartbeat is met
]]
--#include stock_bound
local now = tonumber(ARGV[1])
local cfg = redis.call('HMGET', KEYS[1], 'mode', 'starts_at', 'closes_at', 'rate', 'max_active', 'ttl_ms',
  'abandon_ms', 'paused', 'stock_factor', 'reserve_ms')
local mode = cfg[1]
if not mode then return {'no_room', 0, 0, 0, 0, 0, 0, 0} end
local starts_at, closes_at = tonumber(cfg[2]), tonumber(cfg[3])
local rate, max_active, ttl_ms = tonumber(cfg[4]), tonumber(cfg[5]), tonumber(cfg[6])
local abandon_ms = tonumber(cfg[7])
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
-- How long a choosing visitor counts: twice the time in which nine in ten admitted fans held
-- (learned from the room's holds once ten were seen, at least 4 s), never more than reserve_ms
-- nor past their session (ttl_ms). A fan who looked and left stops counting that much sooner.
local reserve = math.min(tonumber(cfg[10]) or 60000, ttl_ms)
local tth = redis.call('HMGET', KEYS[2], 'tth:0', 'tth:1', 'tth:2', 'tth:3', 'tth:4', 'tth:5', 'tth:6', 'tth:7',
  'tth:8', 'tth:9', 'tth:10', 'tth:11')
local seen_holds = 0
for b = 1, 12 do seen_holds = seen_holds + (tonumber(tth[b]) or 0) end
if seen_holds >= 10 then
  local cum = 0
  for b = 1, 12 do
    cum = cum + (tonumber(tth[b]) or 0)
    if cum * 10 >= seen_holds * 9 then
      reserve = math.min(reserve, math.max(4000, 2 * 1000 * 2 ^ (b - 1)))
      break
    end
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - reserve)
local st = redis.call('HMGET', KEYS[2], 'tokens', 'ts_ms', 'sold_out', 'rate_ewma', 'rate_ts_ms')
local burst = math.max(1, rate * tonumber(ARGV[5]))
local tokens, ts = tonumber(st[1]) or 0, tonumber(st[2]) or now
if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1000) end

local idle = mode == 'closed' or cfg[8] == '1' or st[3] == '1' or now < starts_at
  or (closes_at > 0 and now >= closes_at)
local stock_known = ARGV[7] ~= nil and ARGV[7] ~= ''
if stock_known then
  redis.call('HSET', KEYS[2], 'stock_free', ARGV[7], 'stock_held', ARGV[8] or '', 'reserve_eff_ms', reserve)
else
  redis.call('HDEL', KEYS[2], 'stock_free', 'stock_held')  -- the joins' immediate admission reads it
end
if idle then
  redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'ts_ms', now, 'all_held', '0')
  return {'idle', 0, 0, expired, redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]), 0, 0}
end

local passthrough = mode == 'passthrough'
local want = math.floor(tokens)
local active = redis.call('ZCARD', KEYS[4])
if passthrough then want = tonumber(ARGV[2]) else want = math.min(want, max_active - active) end
want = math.min(want, tonumber(ARGV[2]))
local bound = nil
if stock_known and not passthrough then
  -- the small epsilon keeps 0.3 x 10 from flooring to 2
  local seen = redis.call('HMGET', KEYS[2], 'hold_count', 'hold_tickets')
  bound = serves(tonumber(cfg[9]), tonumber(ARGV[7]), tonumber(seen[1]) or 0, tonumber(seen[2]) or 0)
    - redis.call('ZCARD', KEYS[5])
  want = math.max(0, math.min(want, bound))
end

local nbuckets = 0
if abandon_ms > 0 then nbuckets = math.min(#KEYS - 5, math.ceil(abandon_ms / tonumber(ARGV[6])) + 1) end
-- Whether every complete bucket of the window holds a bit (its key exists): looked up once, and
-- only when a visitor without a heartbeat is met (a tick admitting the heard pays nothing for it).
local heard = nil
local function window_heard()
  if heard == nil then
    heard = true
    for i = 2, nbuckets do
      if redis.call('EXISTS', KEYS[5 + i]) == 0 then heard = false break end
    end
  end
  return heard
end
local max_scan = tonumber(ARGV[3])
local admitted, abandoned, unheard = 0, 0, 0
local exp = now + ttl_ms
while admitted < want and abandoned < max_scan and unheard == 0 do
  local batch = redis.call('ZRANGE', KEYS[3], 0, want - admitted - 1)
  if #batch == 0 then break end
  local done = 0
  for _, vid in ipairs(batch) do
    local alive = nbuckets == 0
    if not alive then
      local seq = tonumber(string.match(vid, '^([0-9a-z]+)_'), 36)
      for i = 1, nbuckets do
        if seq and redis.call('GETBIT', KEYS[5 + i], seq) == 1 then alive = true break end
      end
    end
    if alive then
      redis.call('ZADD', KEYS[4], exp, vid)
      redis.call('ZADD', KEYS[5], now, vid)
      admitted = admitted + 1
    elseif window_heard() then
      abandoned = abandoned + 1
    else
      unheard = 1
      break
    end
    done = done + 1
  end
  if done > 0 then redis.call('ZREM', KEYS[3], unpack(batch, 1, done)) end
end

if not passthrough then tokens = tokens - admitted end
-- all held: the stock admits nobody more and visitors still wait
local all_held = 0
if bound and bound - admitted <= 0 and redis.call('ZCARD', KEYS[3]) > 0 then all_held = 1 end
local r, rts = tonumber(st[4]) or 0, tonumber(st[5]) or now
local tau = tonumber(ARGV[4])
if now > rts then r = r * math.exp(-(now - rts) / tau) end
r = r + admitted * 1000 / tau
redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'ts_ms', now, 'rate_ewma', tostring(r), 'rate_ts_ms', now,
  'all_held', tostring(all_held))
if admitted > 0 then redis.call('HINCRBY', KEYS[2], 'admitted_total', admitted) end
if abandoned > 0 then redis.call('HINCRBY', KEYS[2], 'abandoned_total', abandoned) end
return {'ok', admitted, abandoned, expired, redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]), unheard,
  all_held}
