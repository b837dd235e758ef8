--[[
  join_queue: give a visitor one place in a room's queue (idempotent per visitor), or admit
  them at once when nobody waits and the token bucket and capacity allow.

  KEYS[1]  sd:{room:<r>}:cfg       hash  mode opens_at starts_at closes_at rate max_active ttl_ms paused abandon_ms
  KEYS[2]  sd:{room:<r>}:st        hash  seq tokens ts_ms sold_out admitted_total rate_ewma rate_ts_ms
  KEYS[3]  sd:{room:<r>}:wait      zset  visitor_id -> score (pre-queue: rand in (0,1); later: seq)
  KEYS[4]  sd:{room:<r>}:active    zset  visitor_id -> session expiry ms
  KEYS[5]  sd:{room:<r>}:evicted   set   evicted visitor ids
  KEYS[6]  sd:{room:<r>}:seen:<b>  bitmap of the current time bucket (bit = visitor seq)
  KEYS[7]  sd:{room:<r>}:choosing  zset  visitor_id -> admitted at ms (admitted, not held yet)
  ARGV[1]  visitor_id presented in a valid queue token, or "" for a new visitor
  ARGV[2]  that visitor's seq (parsed from the id), or "" for a new visitor
  ARGV[3]  now_ms
  ARGV[4]  rand: uniform in (0, 1), the pre-queue / lottery score
  ARGV[5]  bucket_ms: length of a heartbeat time bucket (the bitmap lives abandon_ms + 2 buckets)
  ARGV[6]  burst_s: the token bucket holds at most max(1, rate * burst_s) tokens
  ARGV[7]  suffix: random characters appended to a new visitor id ("<seq base36>_<suffix>")
  ARGV[8]  tau_ms: time constant of the measured admission rate (EWMA)
  ARGV[9]  live_only (optional): "1" = a presented visitor whose place is gone (not waiting, no
           live session) gets "not_live" instead of a new place (the room asks proof of work
           of them, as of a new visitor); absent or "" = they get a new place at the back

  Returns  {outcome, visitor_id, created, position, waiting_total, expiry_ms}
           outcome: "waiting" | "admitted" (expiry_ms = session end) | "no_room" | "evicted"
                    | "closed" | "sold_out" | "not_open" | "not_live"; created 1 when a new
           place was made. Refusals (and "not_live") write nothing.
  Cost     O(log N) (ZADD, ZRANK), plus O(M) for expired-session purge on immediate admission
  Includes stock_bound (lua/lib/stock_bound.lua): join_may_admit, the bound on admitting at once
]]
local now = tonumber(ARGV[3])
local cfg = redis.call('HMGET', KEYS[1], 'mode', 'opens_at', 'starts_at', 'closes_at', 'rate', 'max_active',
  'ttl_ms', 'paused', 'abandon_ms')
local mode = cfg[1]
if not mode then return {'no_room', '', 0, 0, 0, 0} end
local opens_at, starts_at, closes_at = tonumber(cfg[2]), tonumber(cfg[3]), tonumber(cfg[4])
local rate, max_active, ttl_ms = tonumber(cfg[5]), tonumber(cfg[6]), tonumber(cfg[7])
local paused = cfg[8] == '1'
local vid = ARGV[1]
local seen_ttl = (tonumber(cfg[9]) or 0) + 2 * tonumber(ARGV[5])

if vid ~= '' then
  if redis.call('SISMEMBER', KEYS[5], vid) == 1 then return {'evicted', vid, 0, 0, 0, 0} end
  local exp = tonumber(redis.call('ZSCORE', KEYS[4], vid))
  if exp and exp > now then return {'admitted', vid, 0, 0, 0, exp} end
  local rank = redis.call('ZRANK', KEYS[3], vid)
  if rank then
    if redis.call('HGET', KEYS[2], 'sold_out') == '1' then return {'sold_out', vid, 0, 0, 0, 0} end
    redis.call('SETBIT', KEYS[6], tonumber(ARGV[2]), 1)
    redis.call('PEXPIRE', KEYS[6], seen_ttl)
    return {'waiting', vid, 0, rank + 1, redis.call('ZCARD', KEYS[3]), 0}
  end
end

if mode == 'closed' or (closes_at > 0 and now >= closes_at) then return {'closed', vid, 0, 0, 0, 0} end
if redis.call('HGET', KEYS[2], 'sold_out') == '1' then return {'sold_out', vid, 0, 0, 0, 0} end
if now < opens_at then return {'not_open', vid, 0, 0, 0, 0} end
if vid ~= '' and ARGV[9] == '1' then return {'not_live', vid, 0, 0, 0, 0} end

local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
local bitseq = seq
if vid == '' then
  local digits, n, s = '0123456789abcdefghijklmnopqrstuvwxyz', seq, ''
  while n > 0 do
    local d = n % 36
    s = string.sub(digits, d + 1, d + 1) .. s
    n = (n - d) / 36
  end
  vid = s .. '_' .. ARGV[7]
else
  bitseq = tonumber(ARGV[2])
end

local function admit()
  local exp = now + ttl_ms
  redis.call('ZADD', KEYS[4], exp, vid)
  redis.call('ZADD', KEYS[7], now, vid)
  redis.call('HINCRBY', KEYS[2], 'admitted_total', 1)
  local tau = tonumber(ARGV[8])
  local st = redis.call('HMGET', KEYS[2], 'rate_ewma', 'rate_ts_ms')
  local r, ts = tonumber(st[1]) or 0, tonumber(st[2]) or now
  if now > ts then r = r * math.exp(-(now - ts) / tau) end
  r = r + 1000 / tau
  redis.call('HSET', KEYS[2], 'rate_ewma', tostring(r), 'rate_ts_ms', now)
  return {'admitted', vid, 1, 0, redis.call('ZCARD', KEYS[3]), exp}
end

if mode == 'passthrough' then return admit() end

--#include stock_bound

local started = now >= starts_at
if started and not paused and redis.call('ZCARD', KEYS[3]) == 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  local st = redis.call('HMGET', KEYS[2], 'tokens', 'ts_ms')
  local burst = math.max(1, rate * tonumber(ARGV[6]))
  local tokens, ts = tonumber(st[1]) or 0, tonumber(st[2]) or now
  if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1000) end
  if tokens >= 1 and redis.call('ZCARD', KEYS[4]) < max_active and join_may_admit(KEYS[1], KEYS[2], KEYS[7], now, ttl_ms) then
    redis.call('HSET', KEYS[2], 'tokens', tostring(tokens - 1), 'ts_ms', now)
    return admit()
  end
  redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'ts_ms', now)
end

local score = seq
if mode == 'lottery' or not started then score = ARGV[4] end
redis.call('ZADD', KEYS[3], 'NX', score, vid)
redis.call('SETBIT', KEYS[6], bitseq, 1)
redis.call('PEXPIRE', KEYS[6], seen_ttl)
return {'waiting', vid, 1, redis.call('ZRANK', KEYS[3], vid) + 1, redis.call('ZCARD', KEYS[3]), 0}
