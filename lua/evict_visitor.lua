--[[
  evict_visitor: remove visitors from the queue and the shop; their queue tokens stop working.
  One visitor for the admin API; many when a room is rebuilt from PostgreSQL's evictions.

  KEYS[1]  sd:{room:<r>}:cfg      hash  (existence of the room)
  KEYS[2]  sd:{room:<r>}:wait     zset  visitor_id -> order score
  KEYS[3]  sd:{room:<r>}:active   zset  visitor_id -> session expiry ms
  KEYS[4]  sd:{room:<r>}:evicted  set   evicted visitor ids
  KEYS[5]  sd:{room:<r>}:choosing zset  admitted visitors who have not held yet (they leave it)
  ARGV[1..] visitor_id, ...

  Returns  {"ok", removed from waiting, removed from active} | {"no_room", 0, 0}
  Cost     O(n log N)
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return {'no_room', 0, 0} end
local waiting = redis.call('ZREM', KEYS[2], unpack(ARGV))
local active = redis.call('ZREM', KEYS[3], unpack(ARGV))
redis.call('ZREM', KEYS[5], unpack(ARGV))
redis.call('SADD', KEYS[4], unpack(ARGV))
return {'ok', waiting, active}
