package ratelimit

import (
	"crypto/sha1"
	"encoding/hex"
	"sync"
	"sync/atomic"
)

// Both scripts touch exactly one key (KEYS[1]) and take the time from Redis
// (TIME), so every replica, whatever its own clock says, sees one timeline.
// They return {allowed, remaining, retry_after_µs, reset_after_µs}.
//
// ARGV[3], when present, replaces TIME. Only this package's tests set it
// (RedisStore.testNow), so one behaviour table can run against Redis and
// MemoryStore on the same fake clock; production calls never pass it.
//
// redis.replicate_commands() is needed before a write that follows TIME on
// Redis < 5 (effects replication); from Redis 5 on it is the default and the
// call is a no-op, in 7.x it is deprecated but still present.

// gcraScript is gcra() in algorithm.go. The key holds the TAT in µs since the
// epoch and expires when the bucket is full again.
const gcraScript = `
if redis.replicate_commands then redis.replicate_commands() end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now
if ARGV[3] then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
local reset = new_tat - now
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil(reset / 1000))
return {1, math.floor((now - allow_at) / interval), 0, reset}
`

// slidingScript is slide() in algorithm.go. The key is a hash {w, c, p}: the
// current fixed window's index and count and the previous window's count;
// it expires when the current window's requests stop counting.
const slidingScript = `
if redis.replicate_commands then redis.replicate_commands() end
local size = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local now
if ARGV[3] then
  now = math.floor(tonumber(ARGV[3]) / 1000)
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local idx = math.floor(now / size)
local e = now - idx * size
local v = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local stored = tonumber(v[1])
local cur = tonumber(v[2]) or 0
local prev = tonumber(v[3]) or 0
if stored == idx then
elseif stored == idx - 1 then
  prev = cur
  cur = 0
else
  prev = 0
  cur = 0
end
local num = prev * (size - e) + (cur + 1) * size
if num <= limit * size then
  cur = cur + 1
  redis.call('HSET', KEYS[1], 'w', string.format('%.0f', idx), 'c', cur, 'p', prev)
  redis.call('PEXPIRE', KEYS[1], 2 * size - e)
  return {1, math.floor((limit * size - num) / size), 0, (2 * size - e) * 1000}
end
local reset = 0
if cur > 0 then
  reset = 2 * size - e
elseif prev > 0 then
  reset = size - e
end
local retry
if cur + 1 <= limit then
  retry = size - math.floor((limit - cur - 1) * size / prev) - e
else
  retry = size - e + size - math.floor((limit - 1) * size / cur)
end
return {0, 0, retry * 1000, reset * 1000}
`

// script is one Lua script, run by SHA; load is called when Redis answers
// NOSCRIPT (first use, after a restart, a failover or SCRIPT FLUSH).
type script struct {
	src string
	sha string

	mu    sync.Mutex    // serialises loads
	epoch atomic.Uint64 // incremented by every successful load
}

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{src: src, sha: hex.EncodeToString(sum[:])}
}
