package main

import (
	"slices"
	"testing"
	"time"
)

const wrkOut = `Running 5s test @ http://127.0.0.1:40000/bench
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.31ms  412.07us  12.01ms   88.12%
    Req/Sec    24.55k     1.02k   26.10k    70.00%
  Latency Distribution
     50%    1.25ms
     75%    1.44ms
     90%    1.71ms
     99%    2.83ms
  122183 requests in 5.00s, 15.85MB read
Requests/sec:  24430.17
Transfer/sec:      3.17MB
`

const wrkOutErrors = `Running 2s test @ http://127.0.0.1:40000/bench
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.00us   10.00us   1.00s    99.00%
    Req/Sec    10.00k     1.00k   11.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%  900.00us
     90%    1.00ms
     99%    1.20s 
  20000 requests in 2.00s, 1.00MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 17
Requests/sec:  10000.00
Transfer/sec:    512.00KB
`

func TestParseWrk(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    wrkResult
		wantErr bool
	}{
		{"clean run", wrkOut, wrkResult{Requests: 122183, ReqPerSec: 24430.17, P50: 1250 * time.Microsecond, P99: 2830 * time.Microsecond}, false},
		{"errors and mixed units", wrkOutErrors, wrkResult{Requests: 20000, ReqPerSec: 10000, P50: 812 * time.Microsecond, P99: 1200 * time.Millisecond, Non2xx: 17, SockErrs: 10}, false},
		{"no latency distribution", "  10 requests in 1.00s, 1KB read\nRequests/sec: 10.0\n", wrkResult{}, true},
		{"empty", "", wrkResult{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWrk(tt.out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseStatTicks(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    int64
		wantErr bool
	}{
		{"plain", "4242 (gateway) S 1 4242 4242 0 -1 4194560 1000 0 0 0 350 125 0 0 20 0 8 0 100 0 0", 475, false},
		{"name with spaces and parens", "7 (a b) c)) R 1 7 7 0 -1 0 0 0 0 0 12 30 0 0 20 0 1 0 5 0 0", 42, false},
		{"truncated", "7 (x) R 1 2 3", 0, true},
		{"no name", "garbage", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatTicks(tt.stat)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestParseProcStat(t *testing.T) {
	stat := "cpu  100 0 50 1000 10 0 5 0 0 0\ncpu0 60 1 30 400 4 0 3 2 7 0\ncpu1 40 0 20 600 6 0 2 0 0 0\n"
	got, err := parseProcStat(stat, "0")
	if err != nil {
		t.Fatal(err)
	}
	// busy = user+nice+system+irq+softirq+steal = 60+1+30+0+3+2; guest is inside user.
	if want := (cpuTimes{busy: 96, total: 500}); got != want {
		t.Errorf("cpu0 = %+v, want %+v", got, want)
	}
	if _, err := parseProcStat(stat, "7"); err == nil {
		t.Error("cpu7: want an error")
	}
}

func TestExpandCPUList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"0-1", []string{"0", "1"}},
		{"0", []string{"0"}},
		{"0-2,5,7-8", []string{"0", "1", "2", "5", "7", "8"}},
		{"", nil},
	}
	for _, tt := range tests {
		if got := expandCPUList(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("expandCPUList(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{7}, 7},
		{nil, 0},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
