--[[
  evict_visitor: remove a visitor from the queue and the shop; their queue token stops working.

  KEYS[1]  sd:{room:<r>}:cfg      hash  (existence of the room)
  KEYS[2]  sd:{room:<r>}:wait     zset  visitor_id -> order score
  KEYS[3]  sd:{room:<r>}:active   zset  visitor_id -> session expiry ms
  KEYS[4]  sd:{room:<r>}:evicted  set   evicted visitor ids
  ARGV[1]  visitor_id

  Returns  {"ok", was_waiting, was_active} | {"no_room", 0, 0}
  Cost     O(log N)
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return {'no_room', 0, 0} end
local waiting = redis.call('ZREM', KEYS[2], ARGV[1])
local active = redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
return {'ok', waiting, active}
