--[[
  join_many: give N new visitors (no queue token) of one room a place each, in one call. The
  result is what N calls of join_queue.lua for new visitors, one after another in ARGV order,
  would give (the same ids, scores, seq numbers, token bucket and admissions), except that
  positions and waiting totals are read once all N are placed.

  The app batches the new-visitor joins of one event-loop turn per room into this script: the
  room's config and sold-out flag are read once, the N places are written with one HINCRBY,
  one ZADD, one BITFIELD and one PEXPIRE. Rejoins (a presented token) stay on join_queue.lua.
  admit() and the immediate-admission loop repeat join_queue.lua's (a script cannot call
  another); tests/waitingroom/test_turn_batches.py keeps the two equal.

  KEYS[1]  sd:{room:<r>}:cfg       hash  mode opens_at starts_at closes_at rate max_active ttl_ms paused abandon_ms
  KEYS[2]  sd:{room:<r>}:st        hash  seq tokens ts_ms sold_out admitted_total rate_ewma rate_ts_ms
  KEYS[3]  sd:{room:<r>}:wait      zset  visitor_id -> score (pre-queue / lottery: rand in (0,1); later: seq)
  KEYS[4]  sd:{room:<r>}:active    zset  visitor_id -> session expiry ms
  KEYS[5]  sd:{room:<r>}:evicted   set   (unused: a new visitor was never evicted; kept so both
                                          join scripts take the same keys)
  KEYS[6]  sd:{room:<r>}:seen:<b>  bitmap of the current time bucket (bit = visitor seq)
  KEYS[7]  sd:{room:<r>}:choosing  zset  visitor_id -> admitted at ms (admitted, not held yet)
  ARGV[1]  now_ms
  ARGV[2]  bucket_ms: length of a heartbeat time bucket (the bitmap lives abandon_ms + 2 buckets)
  ARGV[3]  burst_s: the token bucket holds at most max(1, rate * burst_s) tokens
  ARGV[4]  tau_ms: time constant of the measured admission rate (EWMA)
  ARGV[5+2(i-1)], ARGV[6+2(i-1)]  visitor i's rand (uniform in (0, 1)) and id suffix, i = 1..N

  Returns  N rows, row i for visitor i: {outcome, visitor_id, created, position, waiting_total,
           expiry_ms} as join_queue.lua returns them: outcome "waiting" | "admitted" (expiry_ms =
           session end) | "no_room" | "closed" | "sold_out" | "not_open" (refusals concern the
           whole room, so all N rows are the same refusal, and nothing is written).
  Cost     O(N log M) for M waiting (one ZADD of N members; N ZRANKs only when scores are random)
  Includes stock_bound (lua/lib/stock_bound.lua): join_may_admit, the bound on admitting at once
]]
local now = tonumber(ARGV[1])
local n = (#ARGV - 4) / 2
local cfg = redis.call('HMGET', KEYS[1], 'mode', 'opens_at', 'starts_at', 'closes_at', 'rate', 'max_active',
  'ttl_ms', 'paused', 'abandon_ms')
local mode = cfg[1]

local function refuse(outcome)
  local rows = {}
  for i = 1, n do rows[i] = {outcome, '', 0, 0, 0, 0} end
  return rows
end

if not mode then return refuse('no_room') end
local opens_at, starts_at, closes_at = tonumber(cfg[2]), tonumber(cfg[3]), tonumber(cfg[4])
local rate, max_active, ttl_ms = tonumber(cfg[5]), tonumber(cfg[6]), tonumber(cfg[7])
local paused = cfg[8] == '1'
local seen_ttl = (tonumber(cfg[9]) or 0) + 2 * tonumber(ARGV[2])
if mode == 'closed' or (closes_at > 0 and now >= closes_at) then return refuse('closed') end
if redis.call('HGET', KEYS[2], 'sold_out') == '1' then return refuse('sold_out') end
if now < opens_at then return refuse('not_open') end

-- seq numbers first + 1 .. first + n, and the ids built from them ("<seq base36>_<suffix>")
local first = redis.call('HINCRBY', KEYS[2], 'seq', n) - n
local digits = '0123456789abcdefghijklmnopqrstuvwxyz'
local vids = {}
for i = 1, n do
  local q, s = first + i, ''
  while q > 0 do
    local d = q % 36
    s = string.sub(digits, d + 1, d + 1) .. s
    q = (q - d) / 36
  end
  vids[i] = s .. '_' .. ARGV[4 + 2 * i]
end

local rows = {}
local function admit(i)
  local exp = now + ttl_ms
  redis.call('ZADD', KEYS[4], exp, vids[i])
  redis.call('ZADD', KEYS[7], now, vids[i])
  redis.call('HINCRBY', KEYS[2], 'admitted_total', 1)
  local tau = tonumber(ARGV[4])
  local st = redis.call('HMGET', KEYS[2], 'rate_ewma', 'rate_ts_ms')
  local r, ts = tonumber(st[1]) or 0, tonumber(st[2]) or now
  if now > ts then r = r * math.exp(-(now - ts) / tau) end
  r = r + 1000 / tau
  redis.call('HSET', KEYS[2], 'rate_ewma', tostring(r), 'rate_ts_ms', now)
  rows[i] = {'admitted', vids[i], 1, 0, redis.call('ZCARD', KEYS[3]), exp}
end

if mode == 'passthrough' then
  for i = 1, n do admit(i) end
  return rows
end

-- Immediate admission while nobody waits, visitor by visitor, exactly as join_queue.lua does it;
-- the first visitor who is not admitted makes the queue non-empty, so the rest all queue.
--#include stock_bound

local started = now >= starts_at
local at = 1
if started and not paused and redis.call('ZCARD', KEYS[3]) == 0 then
  while at <= n do
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
    local st = redis.call('HMGET', KEYS[2], 'tokens', 'ts_ms')
    local burst = math.max(1, rate * tonumber(ARGV[3]))
    local tokens, ts = tonumber(st[1]) or 0, tonumber(st[2]) or now
    if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1000) end
    if tokens >= 1 and redis.call('ZCARD', KEYS[4]) < max_active and join_may_admit(KEYS[1], KEYS[2], KEYS[7], now, ttl_ms) then
      redis.call('HSET', KEYS[2], 'tokens', tostring(tokens - 1), 'ts_ms', now)
      admit(at)
      at = at + 1
    else
      redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'ts_ms', now)
      break
    end
  end
end
if at > n then return rows end

-- Everyone left queues: one ZADD, one BITFIELD (a SET u1 per visitor's seq bit), one PEXPIRE.
local by_seq = mode ~= 'lottery' and started
local zadd, bits = {'NX'}, {}
for i = at, n do
  zadd[#zadd + 1] = by_seq and (first + i) or ARGV[3 + 2 * i]
  zadd[#zadd + 1] = vids[i]
  bits[#bits + 1] = 'SET'
  bits[#bits + 1] = 'u1'
  bits[#bits + 1] = first + i
  bits[#bits + 1] = 1
end
redis.call('ZADD', KEYS[3], unpack(zadd))
redis.call('BITFIELD', KEYS[6], unpack(bits))
redis.call('PEXPIRE', KEYS[6], seen_ttl)
local total = redis.call('ZCARD', KEYS[3])
for i = at, n do
  -- by seq, every waiting score is below the new ones (earlier seqs, or pre-queue rands < 1):
  -- the batch is the queue's tail, in order
  local position = by_seq and (total - n + i) or (redis.call('ZRANK', KEYS[3], vids[i]) + 1)
  rows[i] = {'waiting', vids[i], 1, position, total, 0}
end
return rows
