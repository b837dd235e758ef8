--[[
  collect_admitted_emails: after an admit tick, hand the addresses of the visitors it admitted
  who asked for an "it is your turn" e-mail to the notifier, and forget them here.

  The admit tick (admit_batch) gives every visitor it admits the session expiry now + ttl_ms;
  called with the same now_ms, this script finds exactly those visitors in the active set.

  KEYS[1]  sd:{room:<r>}:cfg        hash  ttl_ms (the session length admit_batch used)
  KEYS[2]  sd:{room:<r>}:active     zset  visitor_id -> session expiry ms
  KEYS[3]  sd:{room:<r>}:emails     hash  visitor_id -> e-mail address (left on join)
  KEYS[4]  sd:{room:<r>}:your_turn  list  JSON {"v": visitor_id, "e": address, "x": expiry_ms},
                                          drained by the worker (ticketing/notifications/your_turn.py)
  ARGV[1]  now_ms: the now_ms of the admit tick just run
  ARGV[2]  max: most visitors looked at (the tick's max batch)
  ARGV[3]  list_ttl_ms: the list expires this long after its last write (an undrained list
           does not keep addresses forever)

  Returns  the number of addresses handed over (0 at once when nobody left an address)
  Cost     O(1) when the emails hash is empty; else O(log N + admitted)
]]
if redis.call('HLEN', KEYS[3]) == 0 then return 0 end
local ttl_ms = tonumber(redis.call('HGET', KEYS[1], 'ttl_ms'))
if not ttl_ms then return 0 end
local expiry = tonumber(ARGV[1]) + ttl_ms
local admitted = redis.call('ZRANGEBYSCORE', KEYS[2], expiry, expiry, 'LIMIT', 0, tonumber(ARGV[2]))
local handed = 0
for _, vid in ipairs(admitted) do
  local email = redis.call('HGET', KEYS[3], vid)
  if email then
    redis.call('RPUSH', KEYS[4], cjson.encode({v = vid, e = email, x = expiry}))
    redis.call('HDEL', KEYS[3], vid)
    handed = handed + 1
  end
end
if handed > 0 then redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[3])) end
return handed
