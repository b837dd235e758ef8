--[[
  event_stock: an event's tickets left, as the admission controller needs them (stock-aware
  admission, docs/admission.md "Admission and the stock"): free (neither held nor sold) and held.

  Read from the inventory's counters; a hold that expired but is not yet reclaimed still counts
  as held until the sweeper (or the next hold short of tickets) gives it back, so the free count
  errs on the low side, never the high one.

  KEYS[1]  sd:{ev:<id>}:inv:meta   hash  status ("on_sale" | "sold_out" | "cancelled" | ...)
  KEYS[2]  sd:{ev:<id>}:inv:tiers  hash  c:<tier> capacity, f:<tier> free, s:<tier> sold counters
  ARGV     none

  Returns  {"ok", status, free, held}
           {"not_loaded"}  no inventory in Redis (not on sale yet, or lost: ticketing rebuilds it)
  Cost     O(tiers)
]]
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'not_loaded'} end
local tiers = redis.call('HGETALL', KEYS[2])
local counts = {}
for i = 1, #tiers - 1, 2 do
  local field = tiers[i]
  local kind, code = string.sub(field, 1, 2), string.sub(field, 3)
  if kind == 'c:' or kind == 'f:' or kind == 's:' then
    local c = counts[code]
    if not c then c = {0, 0, 0} counts[code] = c end
    local n = tonumber(tiers[i + 1]) or 0
    if kind == 'c:' then c[1] = n elseif kind == 'f:' then c[2] = n else c[3] = n end
  end
end
local free, held = 0, 0
for _, c in pairs(counts) do
  local f = math.max(0, c[2])
  free = free + f
  held = held + math.max(0, c[1] - c[3] - f)
end
return {'ok', status, free, held}
