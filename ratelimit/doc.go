// Package ratelimit decides whether a request may pass under a rate-limit
// policy, with buckets shared by every gateway replica through Redis or kept
// in process memory. It never imports the gateway: the gateway extracts the
// key (client IP, header, claim, route), calls Limiter.Allow and maps the
// Result to headers and statuses.
//
// # Pieces
//
//   - Policy is one rate_limit block; Result one decision, by value.
//   - Store is the narrow seam: Allow(ctx, policy, key). RedisStore keeps
//     buckets in Redis, changed only by Lua scripts; MemoryStore keeps them
//     in sharded maps with the same integer arithmetic (algorithm.go), so
//     one behaviour table passes against both.
//   - Limiter applies one policy over a Store and handles store failures
//     with the policy's on_store_error: allow, deny (an error wrapping
//     ErrStoreUnavailable, which the gateway answers with 503), or local (a
//     MemoryStore with the limits divided by expected_replicas). It counts
//     decisions (Stats) and tells an optional Observer, whose outcome string
//     is the result label of gateway_ratelimit_decisions_total.
//
// # Token bucket
//
// token_bucket is GCRA, as in go-redis/redis_rate: one timestamp per key,
// the theoretical arrival time (TAT) at which the bucket is full again. A
// request passes when TAT + interval − burst·interval ≤ now; a rejected
// request changes nothing. Times are whole microseconds and the emission
// interval Period/Requests is rounded to the microsecond (3 per second is
// one per 333 333 µs), so all arithmetic is exact in Lua's doubles; the
// rate is off by less than 1 µs per request. Result.Limit is the burst.
//
// # Sliding window
//
// sliding_window is the two-window approximation (as Cloudflare and Kong
// use), not an exact log: each key holds the count of the current fixed
// window and of the previous one, and the count over the last Period is
// estimated as prev·(Period−elapsed)/Period + cur. A request passes when
// the estimate including it is at most Requests. Memory per key is one
// small hash, whatever the limit; an exact sliding log needs one entry per
// request. How far off it can be:
//
//   - It is exact when the previous window's requests were spread evenly.
//     Under steady overload (10× the limit, TestSlidingWindowAccuracy) it
//     lets through 99% of the limit over 100 windows and never more than
//     the limit in any window-length interval.
//   - Worst case over: when the previous window's whole count arrived at its
//     very end, an interval of one Period can see up to limit + prev·f <
//     2×limit requests (f the elapsed share of the current window): 199 for
//     a limit of 100 in the test. A fixed window has the same worst case.
//   - It also errs the other way: a burst at the start of a window still
//     weighs on the next window although an exact window has forgotten it;
//     after a full burst at a window's start the next request passes
//     Period/Requests late (10 ms for 100 per second).
//
// Windows are aligned on multiples of Period since the Unix epoch, and
// timing is in whole milliseconds (Validate wants a whole number of ms).
// Result.Limit is Requests; ResetAfter is when the estimate reaches zero.
//
// # Redis
//
// Keys are PREFIX:{LEN:POLICY:KEY}:tb or :sw, LEN being the policy name's
// length, so the parts cannot run into each other (policy "a" with key
// "h:1.2.3.4" is not policy "a:h" with key "1.2.3.4"; names with separators
// are refused anyway), and the {…} hash tag pins each to one Cluster slot. Every write sets a TTL that ends when the bucket is
// full again (token bucket: at the TAT; sliding window: at the end of the
// next window), so idle buckets vanish. The scripts read Redis's TIME,
// never the caller's clock, so replicas whose clocks disagree still share
// one timeline. They run by EVALSHA; the SHA is computed locally and the
// script is loaded when Redis answers NOSCRIPT (first use, restart,
// failover, SCRIPT FLUSH), once however many callers see it, then the call
// is retried. RedisClient accepts every go-redis client; NewRedisClient
// builds the one for a redis block (one address, Sentinel with
// master_name, or Cluster with addresses) with context deadlines honoured,
// which the per-call timeout relies on.
//
// Each algorithm has two scripts with one body (scripts.go): a per-key
// script that touches exactly KEYS[1], and a batch script that decides
// every key in KEYS in order, reads TIME once and answers four integers
// per key. A lone decision, and every decision over a Cluster or Ring
// client, is a per-key EVALSHA. Over a single server (a plain or Sentinel
// client), where a script may touch any keys, the coalescer sends the
// decisions of a pipeline as one batch EVALSHA per algorithm: Redis pays
// its fixed cost per EVALSHA (parsing, the script lookup, the KEYS and
// ARGV tables, the reply: about 3 µs) once per batch instead of once per
// decision. A key Redis refuses (one of another type) fails its own
// decision only. RedisStoreOptions.PerKeyScripts turns batches off, for
// an address that is a sharding proxy.
//
// # Coalescer
//
// By default RedisStore coalesces: a decision that finds no call in flight
// goes at once as a plain EVALSHA on its caller's goroutine, and the
// decisions that arrive while one is out wait and go together as one
// pipeline as soon as it returns. There is no timer on the way, so a lone
// decision never waits; under load a pipeline carries whatever accumulated
// during the previous round trip (about 30 decisions at 64 concurrent
// callers, about 12 behind the gateway at 32 connections). A round trip
// costs the gateway a write and a read syscall and Redis a read and a
// write; batched, Redis spends about 3–4 µs per decision against 11–13 µs
// for one EVALSHA per decision. A waiting decision allocates nothing and
// arms no timer of its own: one timer per store lets decisions go at their
// deadline (see Failures). RedisStoreOptions.Direct turns coalescing off:
// one EVALSHA per decision over the connection pool.
//
// A far Redis: when decisions wait and the youngest round trip out left
// Timeout/5 ago (10 ms by default), they go at once as another pipeline
// (up to MaxPipelines, 8, out together) instead of waiting for it, so a
// decision waits at most about Timeout/5 plus its own round trip, never
// two round trips. The default 50 ms timeout thus handles round trips up
// to about 30 ms; set redis.timeout to 2.5 × the round trip for a farther
// Redis. A pipeline's round trip is not cut at its callers' deadlines
// (they leave at theirs): cutting it would close its connection, and a new
// connection costs a HELLO round trip before its first command. On a near
// Redis round trips return long before Timeout/5 and there is one pipeline
// at a time, as large as ever. A decision whose timeout ends while it is
// still queued fails (context.DeadlineExceeded) but says nothing about
// Redis and never counts toward failing fast.
//
// # Failures
//
// Each decision is bounded by RedisStoreOptions.Timeout (redis.timeout,
// default 50 ms), queueing included. RedisStore fails fast only on
// transport faults seen repeatedly: once FailFastAfter (3) consecutive
// decisions failed on the way to Redis (refused, reset, timed out) with
// none answered in between, over at least 2 × Timeout (and 250 ms), calls
// return ErrFailingFast for FailFastFor (1 s) without touching the
// network; then a single call probes (with 4 × Timeout, at least 1 s, as it
// usually opens a new connection) and its success resumes normal operation
// — so during an outage only the first decisions wait out the timeout. One event that
// fails many decisions at once (a GC pause, a dropped connection under a
// pipeline) does not open it. An error reply from Redis (WRONGTYPE on one
// key) fails its own decision only; replies about the whole server
// (LOADING, MASTERDOWN, READONLY, …) count as faults. A failure of the
// caller's own context (client gone), and a decision whose timeout ended
// before it left the queue, neither open nor close it. All errors wrap
// ErrStoreUnavailable; every timeout also matches context.DeadlineExceeded.
//
// The go-redis client from NewRedisClient never retries a command itself:
// a connection lost after Redis ran a script would otherwise have the
// decision sent, and charged, twice.
package ratelimit
