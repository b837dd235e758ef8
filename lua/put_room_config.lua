--[[
  put_room_config: create or replace (PUT) or update (PATCH) a room's configuration.

  KEYS[1]  sd:{room:<r>}:cfg  hash  room configuration (field -> value)
  KEYS[2]  sd:{room:<r>}:st   hash  ts_ms (token bucket clock, started at creation);
           cancelled_event (close_cancelled_room): while the room gates that event, its mode
           stays "closed" whatever the copy says
  ARGV[1]  "put" (replace every field) | "patch" (update the given fields of an existing room)
  ARGV[2]  now_ms
  ARGV[3..] field, value, field, value, ...  A "ver" field is the PostgreSQL record's version
           (rooms/record_store.py): a put whose ver is older than the stored one writes nothing,
           so a late copy of an older write (or a rebuild racing an admin change) never wins.
           A room in rate_mode "auto" whose put keeps it in auto mode with the same rate_start
           keeps the controller's current `rate` (lua/set_auto_rate.lua), moved into the new
           rate_min..rate_max: a re-copy or an unrelated change does not undo the controller's
           steps; a new rate_per_s (rate_start) starts the rate there again.

  Returns  {"created"} | {"replaced"} | {"updated"} | {"no_room"} (patch of a missing room:
           nothing written) | {"stale"} (a newer version is stored: nothing written)
  Cost     O(fields)
]]
local exists = redis.call('EXISTS', KEYS[1]) == 1
if ARGV[1] == 'patch' and not exists then return {'no_room'} end
if exists then
  local given
  for i = 3, #ARGV - 1, 2 do
    if ARGV[i] == 'ver' then given = tonumber(ARGV[i + 1]) end
  end
  local stored = tonumber(redis.call('HGET', KEYS[1], 'ver'))
  if given and stored and stored > given then return {'stale'} end
end
local kept
if exists and ARGV[1] == 'put' then
  local old = redis.call('HMGET', KEYS[1], 'rate_mode', 'rate_start', 'rate')
  local new = {}
  for i = 3, #ARGV - 1, 2 do new[ARGV[i]] = ARGV[i + 1] end
  if old[1] == 'auto' and new['rate_mode'] == 'auto' and old[2] == new['rate_start'] and tonumber(old[3]) then
    kept = math.max(tonumber(new['rate_min']), math.min(tonumber(new['rate_max']), tonumber(old[3])))
  end
end
if ARGV[1] == 'put' then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if kept then redis.call('HSET', KEYS[1], 'rate', tostring(kept)) end
redis.call('HSETNX', KEYS[2], 'ts_ms', ARGV[2])
local cancelled = redis.call('HGET', KEYS[2], 'cancelled_event')
if cancelled and cancelled == redis.call('HGET', KEYS[1], 'event_id') then
  redis.call('HSET', KEYS[1], 'mode', 'closed')
end
if ARGV[1] == 'patch' then return {'updated'} end
if exists then return {'replaced'} end
return {'created'}
