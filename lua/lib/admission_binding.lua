--[[
  admission_binding (fragment, lua/lib/admission_binding.lua): an admission is one fan's. Included
  by the hold scripts' line `--#include admission_binding` (stagedoor/lua.py); never loaded or
  called alone.

  key       sd:{ev:<id>}:adm:<jti>   hash  u owner user id, n tickets bought through the admission

  check_binding(key, jti, user_id, qty, max_per_order)
            jti "" (no admission): returns nil, nil. Otherwise reads the binding and returns
            (bound, nil) where bound is {owner or false, bought or false}, or (nil, refusal): a
            reply for the script to return, {"admission_in_use"} (bound to another user) or
            {"admission_limit", max_per_order, bought} (qty plus what it bought exceeds the limit).
            Writes nothing.
  bind(key, bound, user_id, ttl_ms)
            After the hold is written: a first use binds the admission to user_id (n = 0) for
            ttl_ms; an existing binding is left as it is.
  Cost      O(1): one HMGET; HSET and PEXPIRE on a first use only
]]
local function check_binding(key, jti, user_id, qty, max_per_order)
  if jti == '' then return nil, nil end
  local bound = redis.call('HMGET', key, 'u', 'n')
  if bound[1] and bound[1] ~= user_id then return nil, {'admission_in_use'} end
  local bought = tonumber(bound[2] or '0')
  if qty + bought > tonumber(max_per_order) then return nil, {'admission_limit', max_per_order, bought} end
  return bound, nil
end

local function bind(key, bound, user_id, ttl_ms)
  if bound and not bound[1] then
    redis.call('HSET', key, 'u', user_id, 'n', 0)
    redis.call('PEXPIRE', key, ttl_ms)
  end
end
