--[[
  sweep_expired_holds: reclaim holds past their expiry and purge old finished hold records.

  Correctness never waits for this (expired holds already count as free); it restores the free
  counters, frees the seats, clears the one-hold-per-user marker and queues each reclaimed hold
  id on the expired log, which the caller drains into BookingExpired outbox rows.

  KEYS[1]   sd:{ev:<id>}:inv:tiers         hash  f:<tier> free counters
  KEYS[2]   sd:{ev:<id>}:inv:seats         hash  seat_id -> "0" | "s" | "<hold_id>:<expires_ms>"
  KEYS[3]   sd:{ev:<id>}:holds:expiry      zset  hold_id -> expires_ms
  KEYS[4]   sd:{ev:<id>}:holds:rec         hash  hold_id -> hold record (lua/hold_record.md)
  KEYS[5]   sd:{ev:<id>}:holds:users       hash  user_id -> hold_id
  KEYS[6]   sd:{ev:<id>}:holds:done        zset  hold_id -> finished_ms
  KEYS[7]   sd:{ev:<id>}:holds:expired_log list  hold ids reclaimed as expired, to announce
  ARGV[1]   now_ms
  ARGV[2]   reclaim at most this many holds
  ARGV[3]   purge records of holds finished at or before this ms
  ARGV[4]   purge at most this many records

  Returns   {reclaimed_count, more, purged_count}; more = 1 when expired holds remain (call again)
  Cost      O(reclaimed holds x their seats + purged records)
  Includes  reclaim (lua/lib/reclaim.lua): reclaim gives each expired hold back
]]
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])

--#include reclaim
local hold_keys = {tiers = KEYS[1], seats = KEYS[2], expiry = KEYS[3], records = KEYS[4], users = KEYS[5],
                   done = KEYS[6], expired_log = KEYS[7]}

local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, limit)
for _, hid in ipairs(expired) do reclaim(hold_keys, hid, now) end
local more = 0
if #expired == limit and #redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1) > 0 then more = 1 end

local old = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
for _, hid in ipairs(old) do
  redis.call('HDEL', KEYS[4], hid)
  redis.call('ZREM', KEYS[6], hid)
end
return {#expired, more, #old}
