package wallet

import (
	"context"
	"errors"
	"math/rand"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// RetryPolicy says how long and how often a call is tried. The defaults
// (DefaultRetryPolicy) are the Rust and Python SDKs'.
type RetryPolicy struct {
	// CallTimeout is the deadline of one attempt (sent to the server as grpc-timeout).
	CallTimeout time.Duration
	// TotalDeadline bounds a whole call, attempts and sleeps included (the caller's
	// context deadline, when earlier, wins).
	TotalDeadline time.Duration
	// AttemptsMax is the most attempts one call may make, redirects to the leader included.
	AttemptsMax int
	// BackoffBase is the backoff ceiling after the first failed attempt; it doubles after
	// every further one, up to BackoffMax.
	BackoffBase time.Duration
	BackoffMax  time.Duration
}

// DefaultRetryPolicy: 5 s per attempt, 15 s in all, at most 10 attempts, backoff ceilings
// from 20 ms doubling to 1 s.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{
		CallTimeout:   5 * time.Second,
		TotalDeadline: 15 * time.Second,
		AttemptsMax:   10,
		BackoffBase:   20 * time.Millisecond,
		BackoffMax:    time.Second,
	}
}

// Validate reports an unusable policy.
func (p RetryPolicy) Validate() error {
	if p.AttemptsMax < 1 || p.AttemptsMax > 100 {
		return configErrorf("AttemptsMax must be between 1 and 100")
	}
	if p.CallTimeout <= 0 || p.TotalDeadline <= 0 {
		return configErrorf("CallTimeout and TotalDeadline must be positive")
	}
	if p.BackoffBase < 0 || p.BackoffBase > p.BackoffMax {
		return configErrorf("need 0 <= BackoffBase <= BackoffMax")
	}
	return nil
}

// exponentMax: past it the ceiling is the maximum anyway; stopping keeps it overflow-free.
const exponentMax = 30

// attemptTimeoutMin is the floor on one attempt's timeout, so the last attempt before the
// deadline is still usable.
const attemptTimeoutMin = 50 * time.Millisecond

// BackoffCeiling is min(max, base * 2^attempt) for failed attempt number attempt (0-based).
func BackoffCeiling(attempt int, base, max time.Duration) time.Duration {
	if attempt < 0 {
		attempt = 0
	}
	if attempt > exponentMax {
		attempt = exponentMax
	}
	factor := time.Duration(1) << uint(attempt)
	if base > 0 && base > max/factor {
		return max
	}
	if c := base * factor; c < max {
		return c
	}
	return max
}

var (
	jitterMu  sync.Mutex
	jitterRNG = rand.New(rand.NewSource(time.Now().UnixNano()))
)

// FullJitter is a uniformly random sleep in [0, BackoffCeiling(attempt, base, max)].
func FullJitter(attempt int, base, max time.Duration) time.Duration {
	ceiling := BackoffCeiling(attempt, base, max)
	if ceiling <= 0 {
		return 0
	}
	jitterMu.Lock()
	defer jitterMu.Unlock()
	return time.Duration(jitterRNG.Int63n(int64(ceiling) + 1))
}

// attempts is the state of one call's retry loop: where the next attempt goes, its
// timeout, and what a failure means.
type attempts struct {
	endpoints []string
	policy    RetryPolicy
	deadline  time.Time
	target    string
	attempt   int
	now       func() time.Time
}

func newAttempts(ctx context.Context, endpoints []string, policy RetryPolicy, first string) *attempts {
	a := &attempts{endpoints: endpoints, policy: policy, now: time.Now}
	a.deadline = a.now().Add(policy.TotalDeadline)
	if d, ok := ctx.Deadline(); ok && d.Before(a.deadline) {
		a.deadline = d
	}
	a.target = first
	if a.target == "" {
		a.target = endpoints[0]
	}
	return a
}

// timeout is the next attempt's timeout: the call timeout, cut to what is left.
func (a *attempts) timeout() time.Duration {
	t := a.policy.CallTimeout
	if remaining := a.deadline.Sub(a.now()); remaining < t {
		t = remaining
	}
	if t < attemptTimeoutMin {
		t = attemptTimeoutMin
	}
	return t
}

// failed returns the error to stop with (non-nil), or the pause before the next attempt
// (0 to follow a leader hint at once) after moving target.
func (a *attempts) failed(err error) (time.Duration, error) {
	a.attempt++
	var indefinite *Indefinite
	if !errors.As(err, &indefinite) || a.attempt >= a.policy.AttemptsMax {
		return 0, err
	}
	if hint := leaderHint(err); hint != "" && hint != a.target {
		a.target = hint
		if !a.now().Before(a.deadline) {
			return 0, err
		}
		return 0, nil
	}
	a.target = nextEndpoint(a.endpoints, a.target)
	pause := FullJitter(a.attempt-1, a.policy.BackoffBase, a.policy.BackoffMax)
	if indefinite.Details.HasRetryDelay && indefinite.RetryDelay > pause {
		pause = indefinite.RetryDelay
	}
	if !a.now().Add(pause).Before(a.deadline) {
		return 0, err
	}
	return pause, nil
}

// nextEndpoint is the endpoint after current (the first if current came from a hint).
func nextEndpoint(endpoints []string, current string) string {
	for i, e := range endpoints {
		if e == current {
			return endpoints[(i+1)%len(endpoints)]
		}
	}
	return endpoints[0]
}

// callWithRetry calls send(attemptCtx, endpoint) until it succeeds, following NOT_LEADER
// hints at once and moving to the next endpoint after a full-jitter backoff (at least the
// server's RetryInfo delay) on other indefinite failures. A definite failure stops at once.
// send must send the same request every time. Returns the endpoint that answered.
func callWithRetry[T any](ctx context.Context, endpoints []string, policy RetryPolicy, first string,
	send func(ctx context.Context, endpoint string) (T, error)) (T, string, error) {
	var zero T
	a := newAttempts(ctx, endpoints, policy, first)
	for {
		if err := ctx.Err(); err != nil {
			return zero, "", contextError(err)
		}
		if !a.now().Before(a.deadline) {
			return zero, "", &Indefinite{Code: codes.DeadlineExceeded, Reason: ReasonDeadlineExceeded,
				Message: "the call's deadline passed before it could be sent", Cause: context.DeadlineExceeded}
		}
		attemptCtx, cancel := context.WithTimeout(ctx, a.timeout())
		result, err := send(attemptCtx, a.target)
		cancel()
		if err == nil {
			return result, a.target, nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(ctxErr, context.DeadlineExceeded) {
			return zero, "", contextError(ctxErr) // the caller gave up
		}
		classified := Classify(err)
		pause, stop := a.failed(classified)
		if stop != nil {
			return zero, "", stop
		}
		if pause > 0 {
			timer := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				timer.Stop()
				return zero, "", contextError(ctx.Err())
			case <-timer.C:
			}
		}
	}
}

// contextError is the *Indefinite of a call whose caller's context ended.
func contextError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &Indefinite{Code: codes.DeadlineExceeded, Reason: ReasonDeadlineExceeded, Message: "the caller's deadline passed", Cause: err}
	}
	return &Indefinite{Code: codes.Canceled, Reason: ReasonCancelled, Message: "the caller cancelled the call", Cause: err}
}
