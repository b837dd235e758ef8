--[[
  update_inventory_meta: change fields (status, limits, hold TTL) of a loaded event inventory;
  a no-op when the inventory is not loaded (it is then built from PostgreSQL, which already has
  the change). One script instead of WATCH/EXISTS/MULTI: the same on a single Redis and on a
  Cluster (redis-py's cluster pipeline does not run commands in WATCH mode).

  KEYS[1]   sd:{ev:<id>}:inv:meta    hash  status currency max_per_order hold_ttl_ms ...
  ARGV      field1, value1, field2, value2, ...  (at least one pair)

  Returns   1 updated, 0 not loaded (nothing written)
  Cost      O(fields)
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
