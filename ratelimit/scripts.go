package ratelimit

import (
	"crypto/sha1"
	"encoding/hex"
	"sync"
	"sync/atomic"
)

// The scripts take the time from Redis (TIME), so every replica, whatever
// its own clock says, sees one timeline. Each decision returns
// {allowed, remaining, retry_after_µs, reset_after_µs}.
//
// There are two of each: the per-key script (gcraScript, slidingScript)
// touches exactly one key, KEYS[1], and is what a lone decision and a
// Cluster client send; the batch script (gcraBatchScript,
// slidingBatchScript) decides every key in KEYS in order, in one EVALSHA,
// for the coalescer's pipelines over a single Redis (or a Sentinel
// master), where all keys live on one server. A batch reads TIME once and
// answers 4 integers per key, allowed = -1 for a key Redis refused to read
// or write (a key of another type), so one bad key fails only its own
// decision. Redis spends about 3 µs per EVALSHA before the script runs
// (parsing, the script lookup, the KEYS and ARGV tables, the reply), which
// a batch pays once.
//
// The per-key scripts take ARGV = {a, b[, now]}; the batch scripts take
// ARGV = {stride, a1, b1[, now1], a2, b2[, now2], …}, stride 2 or 3. a and b
// are the policy's (interval µs and burst; window ms and limit). now, in
// µs since the epoch, replaces TIME: only this package's tests send it
// (RedisStore.testNow), so one behaviour table can run against Redis and
// MemoryStore on the same fake clock.
//
// redis.replicate_commands() is needed before a write that follows TIME on
// Redis < 5 (effects replication); from Redis 5 on it is the default and the
// call is a no-op, in 7.x it is deprecated but still present.

// scriptClock is the scripts' common start: now_us() is the time in µs,
// TIME read at most once per script run.
const scriptClock = `
if redis.replicate_commands then redis.replicate_commands() end
local clock
local function now_us()
  if not clock then
    local t = redis.call('TIME')
    clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return clock
end
`

// gcraFunc is gcra() in algorithm.go. The key holds the TAT in µs since the
// epoch and expires when the bucket is full again. It returns the four
// answers, or nil and Redis's error.
const gcraFunc = `
local function decide(key, interval, burst, now)
  local v = redis.pcall('GET', key)
  if type(v) == 'table' then return nil, v.err end
  local tat = tonumber(v or now) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - burst * interval
  if allow_at > now then
    return 0, 0, allow_at - now, tat - now
  end
  local reset = new_tat - now
  v = redis.pcall('SET', key, string.format('%.0f', new_tat), 'PX', math.ceil(reset / 1000))
  if v.err then return nil, v.err end
  return 1, math.floor((now - allow_at) / interval), 0, reset
end
`

// slidingFunc is slide() in algorithm.go, on the time in ms. The key is a
// hash {w, c, p}: the current fixed window's index and count and the
// previous window's count; it expires when the current window's requests
// stop counting.
const slidingFunc = `
local function decide(key, size, limit, now_us)
  local now = math.floor(now_us / 1000)
  local idx = math.floor(now / size)
  local e = now - idx * size
  local v = redis.pcall('HMGET', key, 'w', 'c', 'p')
  if v.err then return nil, v.err end
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
    v = redis.pcall('HSET', key, 'w', string.format('%.0f', idx), 'c', cur, 'p', prev)
    if type(v) == 'table' then return nil, v.err end
    v = redis.pcall('PEXPIRE', key, 2 * size - e)
    if type(v) == 'table' then return nil, v.err end
    return 1, math.floor((limit * size - num) / size), 0, (2 * size - e) * 1000
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
  return 0, 0, retry * 1000, reset * 1000
end
`

// oneKey runs decide for KEYS[1]; Redis's error, if any, is the script's.
const oneKey = `
local now = tonumber(ARGV[3]) or now_us()
local a, b, c, d = decide(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), now)
if a == nil then return redis.error_reply(b) end
return {a, b, c, d}
`

// allKeys runs decide for every key in KEYS, in order.
const allKeys = `
local stride = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local j = 1 + (i - 1) * stride
  local now
  if stride == 3 then now = tonumber(ARGV[j + 3]) else now = now_us() end
  local a, b, c, d = decide(KEYS[i], tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2]), now)
  if a == nil then a, b, c, d = -1, 0, 0, 0 end
  local o = (i - 1) * 4
  out[o + 1] = a
  out[o + 2] = b
  out[o + 3] = c
  out[o + 4] = d
end
return out
`

// The scripts, one key or many, for each algorithm.
const (
	gcraScript         = scriptClock + gcraFunc + oneKey
	gcraBatchScript    = scriptClock + gcraFunc + allKeys
	slidingScript      = scriptClock + slidingFunc + oneKey
	slidingBatchScript = scriptClock + slidingFunc + allKeys
)

// script is one Lua script, run by SHA; load is called when Redis answers
// NOSCRIPT (first use, after a restart, a failover or SCRIPT FLUSH).
type script struct {
	src string
	sha string

	mu      sync.Mutex    // guards loading
	epoch   atomic.Uint64 // incremented by every successful load
	loading *loadCall     // the SCRIPT LOAD in flight; nil when none
}

// loadCall is one SCRIPT LOAD that every decision answered NOSCRIPT waits
// for; err is written before done is closed.
type loadCall struct {
	done chan struct{}
	err  error
}

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{src: src, sha: hex.EncodeToString(sum[:])}
}
