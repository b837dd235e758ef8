--[[
  get_queue_status (reference): one visitor's state and position, and a heartbeat (the visitor
  is alive). The app answers polls with lua/status_many.lua, N visitors per call; this is the
  one-visitor script it replaced, kept as the specification status_many is tested against
  (tests/waitingroom/test_turn_batches.py: N calls of this one after another answer and write
  what one status_many call does).

  KEYS[1]  sd:{room:<r>}:cfg       hash  mode starts_at closes_at rate paused abandon_ms
  KEYS[2]  sd:{room:<r>}:st        hash  sold_out rate_ewma rate_ts_ms all_held
  KEYS[3]  sd:{room:<r>}:wait      zset  visitor_id -> order score
  KEYS[4]  sd:{room:<r>}:active    zset  visitor_id -> session expiry ms
  KEYS[5]  sd:{room:<r>}:evicted   set   evicted visitor ids
  KEYS[6]  sd:{room:<r>}:seen:<b>  bitmap of the current time bucket (bit = visitor seq)
  ARGV[1]  visitor_id (from a verified queue token)
  ARGV[2]  visitor seq (parsed from the id): the bit set in KEYS[6] while waiting
  ARGV[3]  now_ms
  ARGV[4]  bucket_ms: length of a heartbeat time bucket (the bitmap lives abandon_ms + 2 buckets)
  ARGV[5]  tau_ms: time constant of the measured admission rate

  Returns  {state, position, waiting_total, expiry_ms, rate_observed, rate_configured, starts_at, paused,
           all_held}
           state: "pre_queue" | "waiting" | "admitted" | "expired" | "sold_out" | "closed"
                  | "evicted" | "no_room"; position 1-based (0 unless waiting); rates as strings
  Cost     O(log N); a waiting visitor's poll: 2 HMGET, SISMEMBER, ZCARD, ZRANK, SETBIT (PEXPIRE once
           per time bucket)
]]
local now = tonumber(ARGV[3])
local vid = ARGV[1]
local cfg = redis.call('HMGET', KEYS[1], 'mode', 'starts_at', 'closes_at', 'rate', 'paused', 'abandon_ms')
if not cfg[1] then return {'no_room', 0, 0, 0, '0', '0', 0, 0, 0} end
if redis.call('SISMEMBER', KEYS[5], vid) == 1 then return {'evicted', 0, 0, 0, '0', '0', 0, 0, 0} end
local st = redis.call('HMGET', KEYS[2], 'sold_out', 'rate_ewma', 'rate_ts_ms', 'all_held')
local r, ts = tonumber(st[2]) or 0, tonumber(st[3]) or now
if now > ts then r = r * math.exp(-(now - ts) / tonumber(ARGV[5])) end
local starts_at, closes_at = tonumber(cfg[2]), tonumber(cfg[3])
local paused = 0
if cfg[5] == '1' then paused = 1 end
local all_held = 0  -- the stock admits nobody more for now (lua/admit_batch.lua)
if st[4] == '1' then all_held = 1 end
local total = redis.call('ZCARD', KEYS[3])
local function reply(state, pos, exp)
  return {state, pos, total, exp, tostring(r), cfg[4], starts_at, paused, all_held}
end
local closed = cfg[1] == 'closed' or (closes_at > 0 and now >= closes_at)
local rank = redis.call('ZRANK', KEYS[3], vid)
if rank == false then
  -- Not waiting: admitted (a visitor leaves the queue when admitted; nobody waits and shops
  -- at once), or the place is gone. A waiting visitor's poll skips this lookup.
  local exp = tonumber(redis.call('ZSCORE', KEYS[4], vid))
  if exp and exp > now then return reply('admitted', 0, exp) end
  if st[1] == '1' then return reply('sold_out', 0, 0) end
  if closed then return reply('closed', 0, 0) end
  return reply('expired', 0, 0)
end
if st[1] == '1' then return reply('sold_out', 0, 0) end
if closed then return reply('closed', 0, 0) end
-- The bit's first setting in this bucket's bitmap gives the bitmap its lifetime (a new bitmap
-- always starts so); later polls in the same bucket find the bit set and skip the PEXPIRE.
if redis.call('SETBIT', KEYS[6], tonumber(ARGV[2]), 1) == 0 then
  redis.call('PEXPIRE', KEYS[6], (tonumber(cfg[6]) or 0) + 2 * tonumber(ARGV[4]))
end
if now < starts_at then return reply('pre_queue', 0, 0) end
return reply('waiting', rank + 1, 0)
