--[[
  shopper_held: an admitted shopper placed a hold: they stop counting as choosing against the
  event's free tickets, and the room learns from it what stock-aware admission needs
  (lua/admit_batch.lua, docs/admission.md "Admission and the stock"): the tickets a hold takes
  (hold_count, hold_tickets) and how long admitted fans take to hold (a histogram of the time
  from admission to hold in powers-of-two seconds, tth:<b> counts holds within 2^b s, b = 0..11).

  KEYS[1]  sd:{room:<r>}:choosing  zset  visitor_id -> admitted at ms (admitted, not held yet)
  KEYS[2]  sd:{room:<r>}:st        hash  hold_count hold_tickets tth:<b>
  ARGV[1]  visitor_id
  ARGV[2]  tickets held
  ARGV[3]  now_ms

  Returns  1 when the visitor was choosing (the time to hold was counted), else 0 (their reserve
           ran out first, or a second hold): the hold's tickets are counted all the same
  Cost     O(log N)
]]
local at = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
redis.call('HINCRBY', KEYS[2], 'hold_count', 1)
redis.call('HINCRBY', KEYS[2], 'hold_tickets', tonumber(ARGV[2]))
if not at then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
local seconds = (tonumber(ARGV[3]) - at) / 1000
local b = 0
while b < 11 and 2 ^ b < seconds do b = b + 1 end
redis.call('HINCRBY', KEYS[2], 'tth:' .. b, 1)
return 1
