--[[
  rate_limit: take tokens from one token bucket, or refuse and say how long to wait.

  KEYS[1]   sd:{rl:<limit>:<subject>}   hash  tokens -> float (tokens left at ts), ts -> ms
            (absent = a full bucket; expires once it would have refilled completely)
  ARGV[1]   now_ms       caller's clock (a clock behind the stored ts refills nothing)
  ARGV[2]   burst        bucket capacity, >= 1
  ARGV[3]   period_ms    time to refill an empty bucket completely, >= 1 (rate = burst / period_ms)
  ARGV[4]   cost         tokens this request takes, 1..burst

  Returns   {1, tokens_left, 0}          allowed; the bucket was debited
            {0, tokens_left, wait_ms}    refused; wait_ms until cost tokens are back; nothing written
  Cost      O(1)
]]
local now = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
if not now or not burst or not period or not cost or burst < 1 or period < 1 or cost < 1 or cost > burst then
  return redis.error_reply("rate_limit: invalid arguments")
end

local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * burst / period)
  ts = now
end

if tokens < cost then
  return {0, math.floor(tokens), math.ceil((cost - tokens) * period / burst)}
end

tokens = tokens - cost
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%d', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * period / burst) + 1)
return {1, math.floor(tokens), 0}
