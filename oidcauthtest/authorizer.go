package oidcauthtest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/aserto-dev/go-authorizer/aserto/authorizer/v2"
	"github.com/aserto-dev/go-authorizer/aserto/authorizer/v2/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/oidcauth/oidcauth"
)

// Policy decides, for a fake authorizer, whether the identity may do what
// the policy path names with the resource (the route's path values, or a
// ReBAC check's object_type, object_id, relation and subject_type).
type Policy func(id oidcauth.Identity, policyPath string, resource map[string]any) bool

// Authorizer is a fake Topaz authorizer for tests of an app's
// authorization wiring: give it to oidcauth.NewAuthorizer in place of
// go-aserto's client. Its decisions come from a Go function; it counts the
// calls it answers and can be made to fail. Safe for concurrent use.
type Authorizer struct {
	policy Policy
	calls  atomic.Int64

	mu   sync.Mutex
	fail error
}

var _ oidcauth.AuthorizerClient = (*Authorizer)(nil)

// NewAuthorizer returns a fake authorizer deciding with policy.
func NewAuthorizer(policy Policy) *Authorizer { return &Authorizer{policy: policy} }

// Calls is how many questions the fake has answered (or failed): with
// oidcauth's decision cache, repeated questions are not asked again.
func (a *Authorizer) Calls() int64 { return a.calls.Load() }

// Fail makes every following call fail as an unreachable authorizer does
// (the app must then answer 503); Fail(false) makes it answer again.
func (a *Authorizer) Fail(down bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fail = nil
	if down {
		a.fail = status.Error(codes.Unavailable, "oidcauthtest: the fake authorizer is down")
	}
}

// Is answers one authorizer question with the policy.
func (a *Authorizer) Is(_ context.Context, in *authorizer.IsRequest, _ ...grpc.CallOption) (*authorizer.IsResponse, error) {
	a.calls.Add(1)
	a.mu.Lock()
	fail := a.fail
	a.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	ic := in.GetIdentityContext()
	id := oidcauth.Identity{Value: ic.GetIdentity()}
	switch ic.GetType() {
	case api.IdentityType_IDENTITY_TYPE_NONE:
		id = oidcauth.Identity{}
	case api.IdentityType_IDENTITY_TYPE_SUB:
		id.Type = oidcauth.IdentitySubject
	case api.IdentityType_IDENTITY_TYPE_JWT:
		id.Type = oidcauth.IdentityJWT
	case api.IdentityType_IDENTITY_TYPE_MANUAL:
		id.Type = oidcauth.IdentityManual
	default:
		return nil, status.Error(codes.InvalidArgument, errors.New("unknown identity type").Error())
	}
	resource := in.GetResourceContext().AsMap()
	path := in.GetPolicyContext().GetPath()
	resp := &authorizer.IsResponse{}
	allowed := a.policy(id, path, resource)
	for _, d := range in.GetPolicyContext().GetDecisions() {
		resp.Decisions = append(resp.Decisions, &authorizer.Decision{Decision: d, Is: allowed})
	}
	return resp, nil
}
