-- tierwise_budget_settle_v1: corrects the reserved estimate by what the request really
-- cost (a delta, which may be negative), on every budget it was reserved against.
--
-- KEYS[i]      the spend of one budget in its period, in micro-USD
-- ARGV[1]      the delta, in micro-USD
-- ARGV[1 + i]  when budget i's period ends (unix seconds)
-- Returns the spends after the correction.
local delta = tonumber(ARGV[1])
local reply = {}
for i = 1, #KEYS do
  reply[i] = redis.call('INCRBY', KEYS[i], delta)
  redis.call('EXPIREAT', KEYS[i], tonumber(ARGV[1 + i]) + 86400)
end
return reply
