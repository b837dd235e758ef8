--[[
  set_auto_rate: apply one step of a room's automatic admission rate (admission/rate_control.py),
  at most one step per control period whichever controller replica computed it.

  KEYS[1]  sd:{room:<r>}:cfg  hash  rate_mode rate rate_min rate_max (rooms/store.py)
  KEYS[2]  sd:{room:<r>}:st   hash  rate_period: the last control period a step was applied in
  ARGV[1]  period: the control period's number (now_ms // period_ms)
  ARGV[2]  expected: the `rate` the step was computed from, as read from KEYS[1]
  ARGV[3]  rate: the new rate (the caller keeps it within the room's bounds)

  Returns  {"applied"}      `rate` set, the period stamped
           {"stale_period"} a step was already applied in this period or a later one (another
                            replica): nothing written
           {"changed"}      `rate` is no longer `expected` (an admin write or another step came
                            between the read and this call): nothing written
           {"not_auto"}     the room is gone or no longer in rate_mode auto: nothing written
  Cost     O(1)
]]
local cfg = redis.call('HMGET', KEYS[1], 'rate_mode', 'rate')
if cfg[1] ~= 'auto' then return {'not_auto'} end
local period = tonumber(ARGV[1])
local last = tonumber(redis.call('HGET', KEYS[2], 'rate_period'))
if last and last >= period then return {'stale_period'} end
if cfg[2] ~= ARGV[2] then return {'changed'} end
redis.call('HSET', KEYS[1], 'rate', ARGV[3])
redis.call('HSET', KEYS[2], 'rate_period', ARGV[1])
return {'applied'}
