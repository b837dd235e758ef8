--[[
  mark_sold_out: set or clear a room's sold-out flag. While set, admission stops and every
  waiting visitor's status reads "sold_out" (the status script checks the flag first).

  KEYS[1]  sd:{room:<r>}:cfg  hash  (existence of the room), event_id
  KEYS[2]  sd:{room:<r>}:st   hash  sold_out "1" | "0", sold_out_at ms; cancelled_event: the
           room's event was cancelled (close_cancelled_room): it stays closed, not sold out
  ARGV[1]  "1" to set, "0" to clear
  ARGV[2]  now_ms

  Returns  {"ok", waiting visitors told} | {"no_room", 0} | {"cancelled", 0} (nothing written)
  Cost     O(1)
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return {'no_room', 0} end
if ARGV[1] == '1' then
  local cancelled = redis.call('HGET', KEYS[2], 'cancelled_event')
  if cancelled and cancelled == redis.call('HGET', KEYS[1], 'event_id') then return {'cancelled', 0} end
end
redis.call('HSET', KEYS[2], 'sold_out', ARGV[1], 'sold_out_at', ARGV[2])
return {'ok', 0}
