--[[
  status_many: N visitors' states and positions, and their heartbeats, in one call. Row i is
  what the one-visitor status script returned for visitor i (its text is kept as the reference in
  tests/waitingroom/get_queue_status_reference.lua); N calls of that script one after another
  would leave Redis exactly as this one does.

  The app batches the status polls of one event-loop turn per room into this script: the
  room's config, its state and the queue length are read once, and the waiting visitors'
  heartbeat bits are set with one BITFIELD (PEXPIRE when one of them was new in this bucket).

  KEYS[1]  sd:{room:<r>}:cfg       hash  mode starts_at closes_at rate paused abandon_ms
  KEYS[2]  sd:{room:<r>}:st        hash  sold_out rate_ewma rate_ts_ms all_held
  KEYS[3]  sd:{room:<r>}:wait      zset  visitor_id -> order score
  KEYS[4]  sd:{room:<r>}:active    zset  visitor_id -> session expiry ms
  KEYS[5]  sd:{room:<r>}:evicted   set   evicted visitor ids
  KEYS[6]  sd:{room:<r>}:seen:<b>  bitmap of the current time bucket (bit = visitor seq)
  ARGV[1]  now_ms
  ARGV[2]  bucket_ms: length of a heartbeat time bucket (the bitmap lives abandon_ms + 2 buckets)
  ARGV[3]  tau_ms: time constant of the measured admission rate
  ARGV[4+2(i-1)], ARGV[5+2(i-1)]  visitor i's id (from a verified queue token) and seq (parsed
           from the id), i = 1..N

  Returns  N rows, row i for visitor i: {state, position, waiting_total, expiry_ms, rate_observed,
           rate_configured, starts_at, paused, all_held}: state "pre_queue" | "waiting" | "admitted" | "expired"
           | "sold_out" | "closed" | "evicted" | "no_room"; position 1-based (0 unless waiting);
           all_held 1 while the event's stock admits nobody more (lua/admit_batch.lua), else 0.
  Cost     O(N log M) for M waiting: per visitor SISMEMBER and ZRANK (ZSCORE when not waiting)
]]
local now = tonumber(ARGV[1])
local n = (#ARGV - 3) / 2
local rows = {}
local cfg = redis.call('HMGET', KEYS[1], 'mode', 'starts_at', 'closes_at', 'rate', 'paused', 'abandon_ms')
if not cfg[1] then
  for i = 1, n do rows[i] = {'no_room', 0, 0, 0, '0', '0', 0, 0, 0} end
  return rows
end
local st = redis.call('HMGET', KEYS[2], 'sold_out', 'rate_ewma', 'rate_ts_ms', 'all_held')
local r, ts = tonumber(st[2]) or 0, tonumber(st[3]) or now
if now > ts then r = r * math.exp(-(now - ts) / tonumber(ARGV[3])) end
local rate = tostring(r)
local starts_at, closes_at = tonumber(cfg[2]), tonumber(cfg[3])
local paused = 0
if cfg[5] == '1' then paused = 1 end
local all_held = 0  -- the stock admits nobody more for now (lua/admit_batch.lua)
if st[4] == '1' then all_held = 1 end
local total = redis.call('ZCARD', KEYS[3])
local sold_out = st[1] == '1'
local closed = cfg[1] == 'closed' or (closes_at > 0 and now >= closes_at)
local pre_queue = now < starts_at
local function reply(state, pos, exp)
  return {state, pos, total, exp, rate, cfg[4], starts_at, paused, all_held}
end

local bits = {}
for i = 1, n do
  local vid = ARGV[2 + 2 * i]
  if redis.call('SISMEMBER', KEYS[5], vid) == 1 then
    rows[i] = {'evicted', 0, 0, 0, '0', '0', 0, 0, 0}
  else
    local rank = redis.call('ZRANK', KEYS[3], vid)
    if rank == false then
      -- not waiting: admitted, or the place is gone (a waiting visitor skips this lookup)
      local exp = tonumber(redis.call('ZSCORE', KEYS[4], vid))
      if exp and exp > now then rows[i] = reply('admitted', 0, exp)
      elseif sold_out then rows[i] = reply('sold_out', 0, 0)
      elseif closed then rows[i] = reply('closed', 0, 0)
      else rows[i] = reply('expired', 0, 0) end
    elseif sold_out then rows[i] = reply('sold_out', 0, 0)
    elseif closed then rows[i] = reply('closed', 0, 0)
    else
      bits[#bits + 1] = 'SET'
      bits[#bits + 1] = 'u1'
      bits[#bits + 1] = ARGV[3 + 2 * i]
      bits[#bits + 1] = 1
      if pre_queue then rows[i] = reply('pre_queue', 0, 0) else rows[i] = reply('waiting', rank + 1, 0) end
    end
  end
end
if #bits > 0 then
  -- a bit's first setting in this bucket's bitmap gives the bitmap its lifetime (a new bitmap
  -- always starts so); polls whose bits were all set already skip the PEXPIRE
  local old = redis.call('BITFIELD', KEYS[6], unpack(bits))
  for j = 1, #old do
    if old[j] == 0 then
      redis.call('PEXPIRE', KEYS[6], (tonumber(cfg[6]) or 0) + 2 * tonumber(ARGV[2]))
      break
    end
  end
end
return rows
