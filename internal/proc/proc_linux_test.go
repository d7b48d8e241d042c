package proc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestChildDiesWithOwner kills an owner process (SIGKILL: no cleanup runs) and
// checks that the kernel kills the child it started (Pdeathsig).
func TestChildDiesWithOwner(t *testing.T) {
	owner := newHelper(t, "owner")
	var child int
	owner.Ready = func(context.Context, int) error {
		for _, l := range strings.Split(owner.Tail(MaxTail), "\n") {
			if v, ok := strings.CutPrefix(l, "child pid="); ok {
				var err error
				child, err = strconv.Atoi(v)
				return err
			}
		}
		return errors.New("no child yet")
	}
	if err := owner.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if !alive(child) {
		t.Fatalf("child %d is not running", child)
	}
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	owner.Kill()

	ctx := testCtx(t)
	for alive(child) {
		select {
		case <-ctx.Done():
			t.Fatalf("child %d still runs after its owner was killed", child)
		case <-time.After(PollInterval):
		}
	}
}

func TestOwnGroup(t *testing.T) {
	for _, own := range []bool{false, true} {
		t.Run(fmt.Sprint("OwnGroup=", own), func(t *testing.T) {
			p := newHelper(t, "serve", "0")
			p.Ready, p.OwnGroup = readyLine(p), own
			if err := p.Start(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			pgid, err := syscall.Getpgid(p.PID())
			if err != nil {
				t.Fatal(err)
			}
			if got := pgid == p.PID(); got != own {
				t.Fatalf("process group %d of pid %d (ours %d): own group %v, want %v", pgid, p.PID(), syscall.Getpgrp(), got, own)
			}
		})
	}
}

// alive reports whether pid runs: it exists and is not a zombie waiting to be reaped.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && !strings.HasPrefix(s[i+1:], " Z") && !strings.HasPrefix(s[i+1:], " X")
}
