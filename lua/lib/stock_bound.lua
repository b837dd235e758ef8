--[[
  stock_bound (fragment, lua/lib/stock_bound.lua): how many admitted shoppers still choosing the
  event's free tickets serve (stock-aware admission, docs/admission.md "Admission and the stock").
  Included by lua/admit_batch.lua and the join scripts (`--#include stock_bound`, stagedoor/lua.py);
  never loaded or called alone.

  serves(factor, free, hold_count, hold_tickets)
            floor(factor x free x (hold_count + 4) / (hold_tickets + 4)): the free tickets over the
            room's mean tickets per hold (four one-ticket pseudo-holds until holds are seen), and
            at least 1 while a ticket is free (the last ones go to a fan who takes fewer).
  join_may_admit(cfg_key, st_key, choosing_key, now, ttl_ms)
            Whether a join may be admitted at once: the last tick's free count (st stock_free)
            serves at least one more than the shoppers choosing within the last tick's reserve
            (st reserve_eff_ms). A room gating an event with no count yet (its first tick, or its
            state lost) admits nobody at once: the visitor queues and the next tick decides.
  Cost      O(1): two HMGET and a ZCOUNT (O(log N))
]]
local function serves(factor, free, hold_count, hold_tickets)
  local n = math.floor((factor or 1) * free * (hold_count + 4) / (hold_tickets + 4) + 1e-9)
  if free > 0 and n < 1 then n = 1 end
  return n
end

local function join_may_admit(cfg_key, st_key, choosing_key, now, ttl_ms)
  local st = redis.call('HMGET', st_key, 'stock_free', 'hold_count', 'hold_tickets', 'reserve_eff_ms')
  local cfg = redis.call('HMGET', cfg_key, 'stock_factor', 'reserve_ms', 'event_id')
  if not st[1] or st[1] == '' then return not cfg[3] or cfg[3] == '' end
  local reserve = tonumber(st[4]) or math.min(tonumber(cfg[2]) or 60000, ttl_ms)
  local choosing = redis.call('ZCOUNT', choosing_key, '(' .. (now - reserve), '+inf')
  return serves(tonumber(cfg[1]), tonumber(st[1]), tonumber(st[2]) or 0, tonumber(st[3]) or 0) - choosing >= 1
end
