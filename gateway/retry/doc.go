// Package retry holds the pieces of the gateway's retry policy, none of which proxies
// anything itself: [Backoff] (exponential, full jitter), [Budget] (a per-service cap on
// retries relative to requests), [Idempotent] (which requests may be sent twice) and
// [Body] (a capped replay buffer for request bodies). The gateway's proxy composes them
// as docs/architecture.md ("Retries") says, roughly:
//
//	budget.Request()                             // once per client request
//	body := retry.NewBody(r.Body, r.ContentLength, bufferBytes)
//	idem := retry.Idempotent(r.Method, r.Header, idempotencyKey)
//	for attempt := 1; ; attempt++ {
//		rc, ok := body.Rewind()                  // the first call always succeeds
//		if !ok { break }                         // more than the cap was read: no replay
//		err, status := send(rc)                  // to an instance not tried yet
//		switch {
//		case attempt == attempts, timedOut(err): // a timeout is not retried
//			stop
//		case dialFailed(err) && !body.Started(): // nothing reached the upstream: any method
//		case idem && (err != nil || status is 502, 503 or 504):
//		default:
//			stop
//		}
//		if !budget.TryRetry() { stop }
//		sleep retry.Backoff(attempt, base, maxBackoff, nil), but not past the deadline
//	}
//
// What classifies an error (dial failure, timeout) is the gateway's business.
package retry
