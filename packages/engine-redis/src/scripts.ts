/**
 * The Lua scripts of the engine. Each one touches the keys of one partition (one hash tag, so one Redis Cluster
 * slot) or the keys of the partition index, never both: Redis runs a script atomically only within one slot.
 * ioredis sends them with EVALSHA and falls back to EVAL when the server does not know the script yet.
 */

/** KEYS: keys zset, values hash. ARGV: key1, value1, key2, value2, … Writes every pair. */
export const PUT = `
local z = {}
for i = 1, #ARGV, 2 do
  z[#z + 1] = '0'
  z[#z + 1] = ARGV[i]
end
redis.call('HSET', KEYS[2], unpack(ARGV))
redis.call('ZADD', KEYS[1], unpack(z))
return 1
`;

/** KEYS: keys zset, values hash. ARGV: key1, key2, … Removes them; returns how many keys the partition has left. */
export const REMOVE = `
redis.call('ZREM', KEYS[1], unpack(ARGV))
redis.call('HDEL', KEYS[2], unpack(ARGV))
return redis.call('ZCARD', KEYS[1])
`;

/**
 * KEYS: keys zset, values hash. ARGV: key, value, mode ("absent" or "equals"), expected. Compare-and-swap;
 * returns 1 when it wrote. Lua strings hold any bytes, so \`~=\` compares values byte for byte.
 */
export const SET_IF = `
local current = redis.call('HGET', KEYS[2], ARGV[1])
if ARGV[3] == 'absent' then
  if current then return 0 end
elseif (not current) or current ~= ARGV[4] then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], '0', ARGV[1])
return 1
`;

/**
 * KEYS: partition index zset, registration hash. ARGV: partition. Lists the partition in the index before any of
 * its keys is written, and records when (Redis server time, ms), so that housekeeping never removes a name
 * whose writer may still be on its way.
 */
export const REGISTER = `
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], '0', ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], t[1] * 1000 + math.floor(t[2] / 1000))
return 1
`;

/**
 * KEYS: partition index zset, registration hash. ARGV: after (ZRANGEBYLEX min bound), count. One page of the
 * index: { now (ms), name1, registered1, name2, registered2, … }.
 */
export const INDEX_PAGE = `
local t = redis.call('TIME')
local names = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, tonumber(ARGV[2]))
local out = { tostring(t[1] * 1000 + math.floor(t[2] / 1000)) }
for i = 1, #names do
  out[#out + 1] = names[i]
  out[#out + 1] = redis.call('HGET', KEYS[2], names[i]) or '0'
end
return out
`;

/**
 * KEYS: partition index zset, registration hash. ARGV: partition, registration time read before the partition
 * was seen empty. Removes the name only if nobody registered it again since.
 */
export const UNREGISTER = `
if (redis.call('HGET', KEYS[2], ARGV[1]) or '0') == ARGV[2] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
`;
