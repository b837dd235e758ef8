--[[
  release_hold: give a hold's seats (or general-admission tickets) back to sale, at its owner's request.

  KEYS[1]   sd:{ev:<id>}:inv:tiers        hash  f:<tier> free counters
  KEYS[2]   sd:{ev:<id>}:inv:seats        hash  seat_id -> "0" | "s" | "<hold_id>:<expires_ms>"
  KEYS[3]   sd:{ev:<id>}:holds:expiry     zset  hold_id -> expires_ms
  KEYS[4]   sd:{ev:<id>}:holds:rec        hash  hold_id -> hold record (lua/hold_record.md)
  KEYS[5]   sd:{ev:<id>}:holds:users      hash  user_id -> hold_id
  KEYS[6]   sd:{ev:<id>}:holds:done       zset  hold_id -> finished_ms
  ARGV[1]   hold_id
  ARGV[2]   now_ms

  Returns   {"ok"}                 released (seats still pointing at this hold freed, counters restored)
            {"not_found"}          no record (never existed, purged, or lost with Redis data)
            {"locked"}             a payment is in progress (locked and not yet expired): nothing written
            {"sold"}               already purchased: nothing written
            {"gone", state}        already released or expired: nothing written
  Cost      O(seats of the hold)
  Includes  reclaim (lua/lib/reclaim.lua): give_back writes the release
]]
--#include reclaim
local hold_id, now = ARGV[1], tonumber(ARGV[2])
local raw = redis.call('HGET', KEYS[4], hold_id)
if not raw then return {'not_found'} end
local r = cjson.decode(raw)
if r.st == 'sold' then return {'sold'} end
if r.st == 'released' or r.st == 'expired' then return {'gone', r.st} end
if r.st == 'locked' and r.e > now then return {'locked'} end

give_back({tiers = KEYS[1], seats = KEYS[2], expiry = KEYS[3], records = KEYS[4], users = KEYS[5],
           done = KEYS[6]}, hold_id, r, 'released', now)
return {'ok'}
