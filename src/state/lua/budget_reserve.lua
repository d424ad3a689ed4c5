-- tierwise_budget_reserve_v1: reserves an estimated cost against every budget a request
-- falls under (its key's and its profile's, daily and monthly), all or nothing.
--
-- KEYS[i]      the spend of one budget in its current period, in micro-USD
-- ARGV[1]      the estimate, in micro-USD
-- ARGV[1 + i]  budget i, in micro-USD
-- ARGV[1 + n + i]  when budget i's period ends (unix seconds): its key expires a day later
-- Returns {0, spent_1, ..., spent_n} (after the reservation) when reserved, or
-- {i, spent_i} for the first budget the estimate would overrun.
local n = #KEYS
local estimate = tonumber(ARGV[1])
local spent = {}
for i = 1, n do
  spent[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  if spent[i] + estimate > tonumber(ARGV[1 + i]) then
    return {i, spent[i]}
  end
end
local reply = {0}
for i = 1, n do
  reply[i + 1] = redis.call('INCRBY', KEYS[i], estimate)
  redis.call('EXPIREAT', KEYS[i], tonumber(ARGV[1 + n + i]) + 86400)
end
return reply
