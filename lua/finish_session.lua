--[[
  finish_session: end an admitted visitor's shopper session (purchase done), freeing capacity.

  KEYS[1]  sd:{room:<r>}:active  zset  visitor_id -> session expiry ms
  KEYS[2]  sd:{room:<r>}:st      hash  finished_total
  KEYS[3]  sd:{room:<r>}:choosing  zset  (the visitor leaves it: it no longer counts against the stock)
  ARGV[1]  visitor_id
  ARGV[2]  now_ms

  Returns  1 when a live session was ended, 0 when the visitor had none (an expired entry is
           removed all the same)
  Cost     O(log N)
]]
redis.call('ZREM', KEYS[3], ARGV[1])
local exp = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if not exp then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
if exp <= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[2], 'finished_total', 1)
return 1
