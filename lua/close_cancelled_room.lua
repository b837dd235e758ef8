--[[
  close_cancelled_room: the room's event was cancelled: close the room for good. Its mode becomes
  "closed" (every waiting visitor's status reads "closed", joins are refused, admission stops)
  and the state remembers which event was cancelled, so a later copy of the room's config
  (put_room_config) or a late sold-out (mark_sold_out) cannot open it again or relabel it while
  the room gates that event.

  KEYS[1]  sd:{room:<r>}:cfg  hash  mode, event_id
  KEYS[2]  sd:{room:<r>}:st   hash  cancelled_event <event id>, cancelled_at ms, sold_out "0"
  ARGV[1]  the cancelled event's id
  ARGV[2]  now_ms

  Returns  {"ok"} | {"no_room"} | {"other_event"} (the room gates another event now: nothing written)
  Cost     O(1)
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return {'no_room'} end
if redis.call('HGET', KEYS[1], 'event_id') ~= ARGV[1] then return {'other_event'} end
redis.call('HSET', KEYS[1], 'mode', 'closed')
redis.call('HSET', KEYS[2], 'cancelled_event', ARGV[1], 'cancelled_at', ARGV[2], 'sold_out', '0')
return {'ok'}
