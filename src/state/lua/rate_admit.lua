-- tierwise_rate_admit_v1: admits one request against a client key's per-minute buckets,
-- both limits at once, all or nothing. The same arithmetic as the memory backend
-- (src/api/rate_limit.rs): a bucket holds a minute's worth, refills continuously, and an
-- absent bucket is full. The request bucket must hold 1, the token bucket more than 0.
--
-- KEYS[1]  the key's buckets: a hash {req, req_at, tok, tok_at} (times in milliseconds)
-- ARGV[1]  requests_per_minute, or -1 for no limit
-- ARGV[2]  tokens_per_minute, or -1 for no limit
-- ARGV[3]  now in milliseconds (tests only; otherwise the server's TIME, one clock for
--          every replica)
-- Returns {0, 0} when admitted; {1, wait_ms} over the request limit; {2, wait_ms} over
-- the token limit, wait_ms being when the bucket will hold enough again.
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local held = redis.call('HMGET', KEYS[1], 'req', 'req_at', 'tok', 'tok_at')

-- A bucket's level now: what it held, refilled since, never above a minute's worth.
local function level(stored, stored_at, per_minute)
  if per_minute < 0 then return nil end
  local value = tonumber(stored)
  if not value then return per_minute end
  local minutes = math.max(0, now - (tonumber(stored_at) or now)) / 60000
  return math.min(per_minute, value + minutes * per_minute)
end

local function wait_ms(value, wanted, per_minute)
  return math.ceil(math.max(0, wanted - value) * 60000 / per_minute)
end

local req = level(held[1], held[2], rpm)
local tok = level(held[3], held[4], tpm)
if tok and tok <= 0 then
  return {2, wait_ms(tok, 1, tpm)}
end
if req and req < 1 then
  return {1, wait_ms(req, 1, rpm)}
end

-- Kept until every bucket would be full again: an absent bucket is a full one.
local ttl = math.max(1000, redis.call('PTTL', KEYS[1]))
if req then
  req = req - 1
  ttl = math.max(ttl, wait_ms(req, rpm, rpm) + 1000)
  redis.call('HSET', KEYS[1], 'req', req, 'req_at', now)
end
redis.call('PEXPIRE', KEYS[1], ttl)
return {0, 0}
