package roster

import (
	"context"
	cryptorand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/roster-dev/roster/clients/go/rosterv1"
)

// RetryPolicy is how the retrying calls (Client.CreateUser and the other
// creates, Client.Retry) retry; set it with WithRetryPolicy.
type RetryPolicy struct {
	// InitialBackoff is the longest wait before the first retry when the
	// server gave no RetryInfo; it doubles with each failed attempt, up to
	// MaxBackoff, each wait drawn in the upper half of it.
	InitialBackoff, MaxBackoff time.Duration
	// AttemptTimeout is each attempt's deadline: an attempt with no answer
	// by then ends DEADLINE_EXCEEDED (its outcome unknown) and is retried.
	AttemptTimeout time.Duration
	// Budget is how long from the first attempt all of them may take: no
	// attempt runs past it (its deadline is cut to what is left) and no
	// retry starts with less than 100 ms of it left (or AttemptTimeout, if
	// shorter); the last error is then returned. The context's deadline
	// shortens it.
	Budget time.Duration
	// OnRetry, when set, is called before each retry with the call's method
	// name, the error of the attempt that failed and the wait before the
	// next one, for logs and metrics.
	OnRetry func(method string, err error, wait time.Duration)
}

// DefaultRetryPolicy waits from 100 ms doubling up to 5 s (or what the
// server's RetryInfo says), 10 s per attempt, 30 s in all: a PostgreSQL
// failover (about 10 s of UNAVAILABLE) is ridden out. As the Java client's
// RetryPolicy.defaults().
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{
		InitialBackoff: 100 * time.Millisecond,
		MaxBackoff:     5 * time.Second,
		AttemptTimeout: 10 * time.Second,
		Budget:         30 * time.Second,
	}
}

// validate names the field and its rule when the policy cannot run.
func (p RetryPolicy) validate() error {
	switch {
	case p.InitialBackoff < 0:
		return fmt.Errorf("roster: RetryPolicy.InitialBackoff must not be negative, got %v", p.InitialBackoff)
	case p.MaxBackoff < p.InitialBackoff:
		return fmt.Errorf("roster: RetryPolicy.MaxBackoff (%v) must be at least InitialBackoff (%v)", p.MaxBackoff, p.InitialBackoff)
	case p.AttemptTimeout <= 0:
		return fmt.Errorf("roster: RetryPolicy.AttemptTimeout must be positive, got %v", p.AttemptTimeout)
	case p.Budget <= 0:
		return fmt.Errorf("roster: RetryPolicy.Budget must be positive, got %v", p.Budget)
	}
	return nil
}

// WithRetryPolicy sets the policy of the retrying calls (DefaultRetryPolicy
// unless set). Dial refuses a policy that cannot run, naming the field.
func WithRetryPolicy(policy RetryPolicy) Option {
	return func(s *dialSettings) { s.retry = &policy }
}

// RetryPolicy is the policy of this client's retrying calls.
func (c *Client) RetryPolicy() RetryPolicy { return c.retry }

const (
	// reasonRequestInProgress is the server's answer to a twin of a create
	// still running (ALREADY_EXISTS): retry, it returns the first result.
	reasonRequestInProgress = "REQUEST_IN_PROGRESS"
	errorDomain             = "roster"
	// minAttempt is the least of the budget a retry must have left after
	// its wait: a shorter attempt could only end DEADLINE_EXCEEDED, which
	// would hide the answer before it.
	minAttempt = 100 * time.Millisecond
	maxHint    = 24 * time.Hour
)

// CreateUser is UserService.CreateUser, safe to retry and retried: when
// request_id is empty, a copy of the request gets a fresh random UUID (the
// request passed is not changed), then the same request (the same id) is
// sent again after each failure a new attempt may cure, and the server
// returns the first result to a retry instead of creating the user twice.
// Retried: UNAVAILABLE (the server or its database is away, as for about
// 10 s during a PostgreSQL failover), DEADLINE_EXCEEDED (the attempt's
// deadline passed: whether it created the user is unknown, the retry finds
// out), RESOURCE_EXHAUSTED with a google.rpc.RetryInfo (throttled), and
// ALREADY_EXISTS with reason REQUEST_IN_PROGRESS (the first attempt still
// runs). Every other error is returned at once. The waits are the server's
// RetryInfo delay when it gives one (plus up to a tenth, at random), else
// capped exponential backoff with jitter; the policy's budget (30 s by
// default) ends the retries with the last error. A context cancelled while
// waiting ends them with CANCELLED (or DEADLINE_EXCEEDED).
//
// Set request_id yourself (and keep it, with what you are creating) to
// carry the guarantee across a restart of your process: the same id by the
// same key is the same user.
func (c *Client) CreateUser(ctx context.Context, request *rosterv1.CreateUserRequest, options ...grpc.CallOption) (*rosterv1.CreateUserResponse, error) {
	return create(ctx, c, "CreateUser", request, c.Users.CreateUser, options)
}

// CloneUser is UserService.CloneUser, safe to retry and retried as CreateUser.
func (c *Client) CloneUser(ctx context.Context, request *rosterv1.CloneUserRequest, options ...grpc.CallOption) (*rosterv1.CloneUserResponse, error) {
	return create(ctx, c, "CloneUser", request, c.Users.CloneUser, options)
}

// CreateGroup is GroupService.CreateGroup, safe to retry and retried as CreateUser.
func (c *Client) CreateGroup(ctx context.Context, request *rosterv1.CreateGroupRequest, options ...grpc.CallOption) (*rosterv1.CreateGroupResponse, error) {
	return create(ctx, c, "CreateGroup", request, c.Groups.CreateGroup, options)
}

// CreateUnit is GroupService.CreateUnit, safe to retry and retried as CreateUser.
func (c *Client) CreateUnit(ctx context.Context, request *rosterv1.CreateUnitRequest, options ...grpc.CallOption) (*rosterv1.CreateUnitResponse, error) {
	return create(ctx, c, "CreateUnit", request, c.Groups.CreateUnit, options)
}

// CreateProfile is GroupService.CreateProfile, safe to retry and retried as CreateUser.
func (c *Client) CreateProfile(ctx context.Context, request *rosterv1.CreateProfileRequest, options ...grpc.CallOption) (*rosterv1.CreateProfileResponse, error) {
	return create(ctx, c, "CreateProfile", request, c.Groups.CreateProfile, options)
}

// CreateApiKey is AuthService.CreateApiKey, safe to retry and retried as
// CreateUser. A retry that returns the first key returns its metadata only:
// the secret is shown once, so a retried create whose first answer was lost
// comes back with an empty secret (revoke that key and create another).
func (c *Client) CreateApiKey(ctx context.Context, request *rosterv1.CreateApiKeyRequest, options ...grpc.CallOption) (*rosterv1.CreateApiKeyResponse, error) {
	return create(ctx, c, "CreateApiKey", request, c.Auth.CreateApiKey, options)
}

// Retry runs call, unary calls on this client's stubs with the context it
// is given (the attempt's deadline), retrying it as CreateUser does under
// the client's RetryPolicy. Only for calls that are safe to repeat: reads,
// and creates whose request carries a request_id. Never for other writes
// (SetUserStatus, AddUserToGroups, ...): one whose outcome was unknown
// could be applied twice.
//
//	var found *rosterv1.GetUserResponse
//	err := client.Retry(ctx, func(ctx context.Context) (err error) {
//		found, err = client.Users.GetUser(ctx, request)
//		return err
//	})
func (c *Client) Retry(ctx context.Context, call func(ctx context.Context) error) error {
	return retry(ctx, c.retry, "call", call, rand.Float64)
}

func create[Q proto.Message, R any](ctx context.Context, c *Client, method string, request Q,
	rpc func(context.Context, Q, ...grpc.CallOption) (R, error), options []grpc.CallOption) (R, error) {
	identified := withRequestID(request)
	var response R
	err := retry(ctx, c.retry, method, func(ctx context.Context) (err error) {
		response, err = rpc(ctx, identified, options...)
		return err
	}, rand.Float64)
	return response, err
}

// withRequestID is request, or a copy of it with a fresh random UUID in its
// request_id field when that is empty.
func withRequestID[Q proto.Message](request Q) Q {
	message := request.ProtoReflect()
	field := message.Descriptor().Fields().ByName("request_id")
	if field == nil || field.Kind() != protoreflect.StringKind {
		panic(fmt.Sprintf("roster: %s has no request_id: it is not a create", message.Descriptor().FullName()))
	}
	if message.Get(field).String() != "" {
		return request
	}
	identified := proto.Clone(request).(Q)
	identified.ProtoReflect().Set(field, protoreflect.ValueOfString(newUUID()))
	return identified
}

// newUUID is a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = cryptorand.Read(b[:]) // It never fails (it panics instead).
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// retry runs attempt until it succeeds, fails in a way no retry may cure,
// or the policy's budget ends (the last error is returned). Each attempt
// gets a context with its deadline.
func retry(ctx context.Context, policy RetryPolicy, method string, attempt func(context.Context) error,
	random func() float64) error {
	budget, cancel := context.WithTimeout(ctx, policy.Budget)
	defer cancel()
	end, _ := budget.Deadline()
	backoff := backoff{initial: policy.InitialBackoff, max: policy.MaxBackoff, random: random}
	for {
		attemptCtx, cancelAttempt := context.WithTimeout(budget, policy.AttemptTimeout)
		err := attempt(attemptCtx)
		cancelAttempt()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err // The caller gave up: its own cancellation or deadline.
		}
		hint, hinted := retryDelay(err)
		if !retryableCreate(err, hinted) {
			return err
		}
		wait := backoff.next()
		if hinted {
			wait = hint + time.Duration(random()*float64(hint/10))
		}
		if time.Now().Add(wait + min(minAttempt, policy.AttemptTimeout)).After(end) {
			return err
		}
		if policy.OnRetry != nil {
			policy.OnRetry(method, err, wait)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return status.FromContextError(ctx.Err()).Err()
		case <-timer.C:
		}
	}
}

// retryableCreate tells whether a new attempt may meet another answer
// without doing twice what the first did: the server or the connection is
// down (UNAVAILABLE), the outcome is unknown (DEADLINE_EXCEEDED: the request
// id makes the retry return the first result, if there was one), the server
// asks to come back later (RESOURCE_EXHAUSTED with a RetryInfo; without one
// it is a quota, which waiting does not restore), or a twin of this create
// is still running (ALREADY_EXISTS REQUEST_IN_PROGRESS).
func retryableCreate(err error, hasRetryInfo bool) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	case codes.ResourceExhausted:
		return hasRetryInfo
	case codes.AlreadyExists:
		for _, detail := range status.Convert(err).Details() {
			if info, ok := detail.(*errdetails.ErrorInfo); ok &&
				info.Reason == reasonRequestInProgress && info.Domain == errorDomain {
				return true
			}
		}
	}
	return false
}

// retryDelay is the delay the server's RetryInfo asks for, within [0, 1 day]:
// the budget decides about long ones.
func retryDelay(err error) (time.Duration, bool) {
	for _, detail := range status.Convert(err).Details() {
		if info, ok := detail.(*errdetails.RetryInfo); ok {
			delay := info.GetRetryDelay()
			if delay.GetSeconds() >= int64(maxHint/time.Second) {
				return maxHint, true
			}
			return max(delay.AsDuration(), 0), true
		}
	}
	return 0, false
}
