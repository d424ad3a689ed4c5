-- tierwise_circuit_report_v1: one replica's call outcome on an upstream, counted for the
-- whole fleet. Consecutive failures seen by any replica add up; the one that reaches the
-- threshold opens the circuit for everyone (PUBLISH), and is the one that probes when
-- the cooldown is over. A success anywhere resets the count and closes it for everyone.
--
-- KEYS[1]  the upstream's fleet count: a hash {failures}
-- ARGV[1]  "fail" or "ok"
-- ARGV[2]  the upstream's circuit_failures (the threshold)
-- ARGV[3]  its circuit_cooldown_ms
-- ARGV[4]  the channel replicas listen on
-- ARGV[5]  the upstream's name (in the message)
-- ARGV[6]  the reporting replica's id (so it ignores its own message)
-- Returns the fleet's consecutive failures after this outcome (0 after a success).
if ARGV[1] == 'ok' then
  if redis.call('DEL', KEYS[1]) == 1 then
    redis.call('PUBLISH', ARGV[4], 'close ' .. ARGV[5] .. ' 0 0 ' .. ARGV[6])
  end
  return 0
end
local threshold = tonumber(ARGV[2])
local cooldown = tonumber(ARGV[3])
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
-- Failures far apart are not "in a row": the count lapses after two cooldowns without one.
redis.call('PEXPIRE', KEYS[1], cooldown * 2)
if threshold > 0 and failures >= threshold then
  redis.call('PUBLISH', ARGV[4], 'open ' .. ARGV[5] .. ' ' .. cooldown .. ' ' .. failures .. ' ' .. ARGV[6])
end
return failures
