package wallet

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

const (
	base = 20 * time.Millisecond
	max  = time.Second
)

func TestBackoffCeilingDoublesThenCaps(t *testing.T) {
	for _, c := range []struct {
		attempt int
		want    time.Duration
	}{{0, 20 * time.Millisecond}, {1, 40 * time.Millisecond}, {5, 640 * time.Millisecond}, {6, max}, {1 << 30, max}, {-1, base}} {
		if got := BackoffCeiling(c.attempt, base, max); got != c.want {
			t.Errorf("BackoffCeiling(%d) = %s, want %s", c.attempt, got, c.want)
		}
	}
	huge := time.Duration(1 << 62)
	if got := BackoffCeiling(40, huge, time.Duration(1<<63-1)); got != time.Duration(1<<63-1) {
		t.Errorf("no overflow: got %s", got)
	}
}

func TestFullJitterStaysWithinBounds(t *testing.T) {
	for attempt := 0; attempt < 50; attempt++ {
		for i := 0; i < 100; i++ {
			if sleep := FullJitter(attempt, base, max); sleep < 0 || sleep > BackoffCeiling(attempt, base, max) {
				t.Fatalf("attempt %d: %s", attempt, sleep)
			}
		}
	}
	if got := FullJitter(3, 0, 0); got != 0 {
		t.Fatalf("zero ceiling: %s", got)
	}
}

func TestFullJitterIsSpread(t *testing.T) {
	low, high := false, false
	for i := 0; i < 200; i++ {
		sleep := FullJitter(10, base, max)
		low = low || sleep < max/2
		high = high || sleep > max/2
	}
	if !low || !high {
		t.Fatalf("not spread: low=%v high=%v", low, high)
	}
}

func TestPolicyValidation(t *testing.T) {
	if err := DefaultRetryPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := DefaultRetryPolicy()
	bad.AttemptsMax = 0
	if err := bad.Validate(); !errors.As(err, new(*ConfigError)) {
		t.Fatalf("AttemptsMax 0: %v", err)
	}
	bad = DefaultRetryPolicy()
	bad.BackoffBase = 2 * bad.BackoffMax
	if bad.Validate() == nil {
		t.Fatal("base above max accepted")
	}
}

func quickPolicy() RetryPolicy {
	return RetryPolicy{CallTimeout: time.Second, TotalDeadline: 3 * time.Second, AttemptsMax: 5,
		BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond}
}

func TestRetryLoopFollowsHintsRotatesAndStops(t *testing.T) {
	endpoints := []string{"a:1", "b:1", "c:1"}
	var seen []string
	result, endpoint, err := callWithRetry(context.Background(), endpoints, quickPolicy(), "",
		func(ctx context.Context, target string) (string, error) {
			seen = append(seen, target)
			switch len(seen) {
			case 1:
				return "", notLeader("c:1")
			case 2:
				return "", unavailable("OUTCOME_UNKNOWN", 0) // rotates: c -> a
			}
			return "ok", nil
		})
	if err != nil || result != "ok" || endpoint != "a:1" {
		t.Fatalf("got %q %q %v", result, endpoint, err)
	}
	if want := []string{"a:1", "c:1", "a:1"}; !equal(seen, want) {
		t.Fatalf("targets %v, want %v", seen, want)
	}

	calls := 0
	_, _, err = callWithRetry(context.Background(), endpoints, quickPolicy(), "",
		func(ctx context.Context, target string) (string, error) {
			calls++
			return "", statusError(codes.FailedPrecondition, "INSUFFICIENT_FUNDS", "", nil)
		})
	var rejected *Rejected
	if !errors.As(err, &rejected) || calls != 1 || rejected.Reason != ReasonInsufficientFunds {
		t.Fatalf("a rejection: %v after %d calls", err, calls)
	}

	calls = 0
	_, _, err = callWithRetry(context.Background(), endpoints, quickPolicy(), "",
		func(ctx context.Context, target string) (string, error) {
			calls++
			return "", unavailable("", 0)
		})
	var indefinite *Indefinite
	if !errors.As(err, &indefinite) || calls != quickPolicy().AttemptsMax || indefinite.Reason != ReasonTransport {
		t.Fatalf("attempts: %v after %d calls", err, calls)
	}
}

func TestRetryLoopHonoursRetryInfoAndDeadline(t *testing.T) {
	policy := quickPolicy()
	started := time.Now()
	calls := 0
	_, _, err := callWithRetry(context.Background(), []string{"a:1"}, policy, "",
		func(ctx context.Context, target string) (int, error) {
			calls++
			if calls == 1 {
				return 0, unavailable("OVERLOADED", 200*time.Millisecond)
			}
			return 1, nil
		})
	if err != nil || time.Since(started) < 200*time.Millisecond {
		t.Fatalf("RetryInfo not honoured: %v after %s", err, time.Since(started))
	}

	// A RetryInfo delay past the deadline: give up at once rather than sleep past it.
	policy.TotalDeadline = 100 * time.Millisecond
	started = time.Now()
	_, _, err = callWithRetry(context.Background(), []string{"a:1"}, policy, "",
		func(ctx context.Context, target string) (int, error) {
			return 0, unavailable("OVERLOADED", time.Second)
		})
	if !errors.As(err, new(*Indefinite)) || time.Since(started) > 500*time.Millisecond {
		t.Fatalf("deadline: %v after %s", err, time.Since(started))
	}

	// The caller's context bounds the loop too.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	policy = quickPolicy()
	policy.AttemptsMax = 100
	started = time.Now()
	_, _, err = callWithRetry(ctx, []string{"a:1"}, policy, "",
		func(ctx context.Context, target string) (int, error) {
			<-ctx.Done()
			return 0, statusError(codes.DeadlineExceeded, "", "", nil)
		})
	var indefinite *Indefinite
	if !errors.As(err, &indefinite) || indefinite.Code != codes.DeadlineExceeded || time.Since(started) > time.Second {
		t.Fatalf("context deadline: %v after %s", err, time.Since(started))
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
