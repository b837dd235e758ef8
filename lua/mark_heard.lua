--[[
  mark_heard: the waiting room's beacon. Every waiting-room process calls it for every room
  about once a second while it can write to Redis: it sets bit 0 of the room's current heartbeat
  bucket (visitor sequence numbers start at 1, so bit 0 is nobody's). A bucket holding any bit is
  "heard": lua/admit_batch.lua judges a silent visitor abandoned only over a window whose
  complete buckets are all heard. So a room whose waiting visitors have all gone quiet is still
  heard (its closed tabs are dropped as before), while an outage of Redis or of the waiting room
  (no beacon, no heartbeat) leaves dark buckets and drops nobody.

  KEYS[1]  sd:{room:<r>}:cfg        hash    abandon_ms
  KEYS[2]  sd:{room:<r>}:seen:<b>   bitmap  of the current time bucket
  ARGV[1]  bucket_ms: length of one heartbeat time bucket

  Returns  1 when the bit was set now, 0 when it was set already, -1 when the room does not exist
           (nothing written)
  Cost     O(1)
]]
local abandon_ms = redis.call('HGET', KEYS[1], 'abandon_ms')
if not abandon_ms then return -1 end
if redis.call('SETBIT', KEYS[2], 0, 1) == 1 then return 0 end
-- the bitmap's lifetime, as join and status give it (a new bitmap always starts here)
redis.call('PEXPIRE', KEYS[2], tonumber(abandon_ms) + 2 * tonumber(ARGV[1]))
return 1
