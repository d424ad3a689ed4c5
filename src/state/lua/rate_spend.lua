-- tierwise_rate_spend_v1: charges the tokens a request used to its key's token bucket,
-- after the answer, as the memory backend does: the bucket may go below zero (the key
-- then waits), but not below an hour's worth, so one huge answer cannot lock a key out
-- for ever.
--
-- KEYS[1]  the key's buckets: a hash {req, req_at, tok, tok_at} (times in milliseconds)
-- ARGV[1]  tokens_per_minute
-- ARGV[2]  tokens used
-- ARGV[3]  now in milliseconds (tests only; otherwise the server's TIME)
-- Returns the token bucket's level after the charge, rounded down.
local tpm = tonumber(ARGV[1])
local used = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local held = redis.call('HMGET', KEYS[1], 'tok', 'tok_at')
local tok = tonumber(held[1])
if tok then
  local minutes = math.max(0, now - (tonumber(held[2]) or now)) / 60000
  tok = math.min(tpm, tok + minutes * tpm)
else
  tok = tpm
end
tok = math.max(tok - used, -tpm * 60)
redis.call('HSET', KEYS[1], 'tok', tok, 'tok_at', now)
local ttl = math.ceil((tpm - tok) * 60000 / tpm) + 1000
redis.call('PEXPIRE', KEYS[1], math.max(ttl, redis.call('PTTL', KEYS[1])))
return math.floor(tok)
