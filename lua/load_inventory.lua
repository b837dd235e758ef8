--[[
  load_inventory: swap a freshly staged inventory of one event in, atomically (on sale, or rebuild).

  The caller first writes the staging keys (KEYS[8..11]) from PostgreSQL in chunks; this script
  then replaces the live inventory in one step, so no request sees a half-loaded event. Holds in
  flight are dropped (their seats are free in the staged inventory unless PostgreSQL says sold).
  The expired log is kept: reclaimed holds not yet announced are still announced.
  The waiting-room gate (the event -> room link) is written with the meta (see ARGV[2]).

  KEYS[1]   sd:{ev:<id>}:inv:meta            hash  live meta (the "loaded" marker)
  KEYS[2]   sd:{ev:<id>}:inv:tiers           hash  live tier prices and counters
  KEYS[3]   sd:{ev:<id>}:inv:seats           hash  live seat states
  KEYS[4]   sd:{ev:<id>}:inv:seat_tiers      hash  live seat tiers
  KEYS[5]   sd:{ev:<id>}:holds:expiry        zset  dropped
  KEYS[6]   sd:{ev:<id>}:holds:rec           hash  dropped
  KEYS[7]   sd:{ev:<id>}:holds:users         hash  dropped
  KEYS[8]   sd:{ev:<id>}:inv:load:meta       hash  staged meta (must exist)
  KEYS[9]   sd:{ev:<id>}:inv:load:tiers      hash  staged tiers
  KEYS[10]  sd:{ev:<id>}:inv:load:seats      hash  staged seats (absent for general admission only)
  KEYS[11]  sd:{ev:<id>}:inv:load:seat_tiers hash  staged seat tiers
  KEYS[12]  sd:{ev:<id>}:holds:done          zset  dropped
  KEYS[13]  sd:{ev:<id>}:room                string  the event -> room link (the waiting-room gate)
  ARGV[1]   generation (stored as meta "gen")
  ARGV[2]   id of the room PostgreSQL says gates the event, "" when none: set in the same step as
            the meta, so a hold script never sees a rebuilt inventory without its gate. A link
            already in Redis is kept when ARGV[2] is "" (an admin's link written ahead of its
            commit; an ungating write removes its link again through its pending note).

  Returns   {"ok", generation}
            {"not_staged"}   the staged meta is missing: nothing written
  Cost      O(size of the replaced keys) (DEL of the old hashes)
]]
if redis.call('EXISTS', KEYS[8]) == 0 then return {'not_staged'} end
redis.call('DEL', KEYS[5], KEYS[6], KEYS[7], KEYS[12])
for i = 2, 4 do
  if redis.call('EXISTS', KEYS[i + 7]) == 1 then
    redis.call('RENAME', KEYS[i + 7], KEYS[i])
  else
    redis.call('DEL', KEYS[i])
  end
end
if ARGV[2] ~= '' then redis.call('SET', KEYS[13], ARGV[2]) end
redis.call('HSET', KEYS[8], 'gen', ARGV[1])
redis.call('RENAME', KEYS[8], KEYS[1])
return {'ok', ARGV[1]}
