package proc

import (
	"context"
	"errors"
	"sync"
	"time"
)

// StartAll starts ps concurrently and returns once every one is ready. When one
// fails, every one is killed again and the errors are returned joined (so
// errors.Is(err, ErrPortInUse) tells whether a port was taken).
func StartAll(ctx context.Context, ps []*Process) error {
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() { errs[i] = p.Start(ctx) })
	}
	wg.Wait()
	err := errors.Join(errs...)
	if err != nil {
		KillAll(ps)
	}
	return err
}

// StopAll stops ps concurrently, each with Stop(grace), and returns their errors
// joined. Nil entries are skipped.
func StopAll(grace time.Duration, ps []*Process) error {
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		if p != nil {
			wg.Go(func() { errs[i] = p.Stop(grace) })
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// KillAll kills ps concurrently and waits until every one has exited. Nil entries
// are skipped.
func KillAll(ps []*Process) {
	var wg sync.WaitGroup
	for _, p := range ps {
		if p != nil {
			wg.Go(p.Kill)
		}
	}
	wg.Wait()
}

// RetryPortInUse calls start until it returns nil or an error that does not wrap
// ErrPortInUse, at most attempts times, and returns its last error. start is meant
// to pick fresh ports each time.
func RetryPortInUse(attempts int, start func() error) error {
	var err error
	for range max(attempts, 1) {
		if err = start(); !errors.Is(err, ErrPortInUse) {
			return err
		}
	}
	return err
}
