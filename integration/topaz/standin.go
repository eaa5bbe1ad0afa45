package topaz

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authorizer "github.com/aserto-dev/go-authorizer/aserto/authorizer/v2"
	"github.com/aserto-dev/go-authorizer/aserto/authorizer/v2/api"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Options configures a Server.
type Options struct {
	// Addr is the address to listen on; default 127.0.0.1:0, a free
	// loopback port.
	Addr string
	// PolicyDirs are directories of .rego files; every module is loaded.
	PolicyDirs []string
	// DataDirs are directories of Topaz import files (manifest.yaml and
	// JSON objects and relations) for the directory.
	DataDirs []string
}

// Server is a running Topaz stand-in. Its methods are safe for concurrent
// use.
type Server struct {
	authorizer.UnimplementedAuthorizerServer

	Directory *Directory

	modules []func(*rego.Rego)
	grpc    *grpc.Server
	addr    string
	http    *http.Client

	calls   atomic.Int64
	delay   atomic.Int64 // nanoseconds each Is waits before answering
	mu      sync.Mutex
	queries map[string]*rego.PreparedEvalQuery
	paths   []string // policy paths asked, in order
}

// Start loads the policies and data and serves on a loopback port until
// Stop.
func Start(opts Options) (*Server, error) {
	s := &Server{
		Directory: NewDirectory(),
		queries:   make(map[string]*rego.PreparedEvalQuery),
		http:      &http.Client{Timeout: 5 * time.Second},
	}
	for _, dir := range opts.PolicyDirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.rego"))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			s.modules = append(s.modules, rego.Module(f, string(src)))
		}
	}
	if len(s.modules) == 0 {
		return nil, fmt.Errorf("no .rego files in %v", opts.PolicyDirs)
	}
	for _, dir := range opts.DataDirs {
		if err := s.Directory.Load(dir); err != nil {
			return nil, err
		}
	}
	// Compile every module once now, so that a broken policy fails Start.
	if _, err := s.prepare(context.Background(), "x = true"); err != nil {
		return nil, err
	}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s.addr = ln.Addr().String()
	s.grpc = grpc.NewServer()
	authorizer.RegisterAuthorizerServer(s.grpc, s)
	go func() { _ = s.grpc.Serve(ln) }()
	return s, nil
}

// Addr is the gRPC address, host:port.
func (s *Server) Addr() string { return s.addr }

// Calls is the number of Is calls received.
func (s *Server) Calls() int64 { return s.calls.Load() }

// Paths are the policy paths asked, in order.
func (s *Server) Paths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.paths...)
}

// SetDelay makes each Is wait d before answering (or until the caller
// gives up).
func (s *Server) SetDelay(d time.Duration) { s.delay.Store(int64(d)) }

// Stop stops serving at once: open connections are closed and new ones
// refused.
func (s *Server) Stop() { s.grpc.Stop() }

// dsCheck is Topaz's ds.check built-in, answered from the directory.
func (s *Server) dsCheck() func(*rego.Rego) {
	return rego.Function1(&rego.Function{
		Name: "ds.check",
		Decl: types.NewFunction(types.Args(types.NewObject(nil, types.NewDynamicProperty(types.S, types.A))), types.B),
	}, func(_ rego.BuiltinContext, op *ast.Term) (*ast.Term, error) {
		var req struct {
			ObjectType  string `json:"object_type"`
			ObjectID    string `json:"object_id"`
			Relation    string `json:"relation"`
			SubjectType string `json:"subject_type"`
			SubjectID   string `json:"subject_id"`
		}
		if err := ast.As(op.Value, &req); err != nil {
			return nil, err
		}
		return ast.BooleanTerm(s.Directory.Check(req.ObjectType, req.ObjectID, req.Relation, req.SubjectType, req.SubjectID)), nil
	})
}

// prepare compiles query against the policies, once per query.
func (s *Server) prepare(ctx context.Context, query string) (*rego.PreparedEvalQuery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.queries[query]; q != nil {
		return q, nil
	}
	opts := append([]func(*rego.Rego){rego.Query(query), s.dsCheck()}, s.modules...)
	q, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return nil, err
	}
	s.queries[query] = &q
	return &q, nil
}

// Is evaluates data.<path>.<decision> for each decision asked, as topazd
// does.
func (s *Server) Is(ctx context.Context, req *authorizer.IsRequest) (*authorizer.IsResponse, error) {
	s.calls.Add(1)
	if d := time.Duration(s.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	pc := req.GetPolicyContext()
	switch {
	case pc == nil:
		return nil, status.Error(codes.InvalidArgument, "policy context not set")
	case pc.GetPath() == "":
		return nil, status.Error(codes.InvalidArgument, "policy context path not set")
	case len(pc.GetDecisions()) == 0:
		return nil, status.Error(codes.InvalidArgument, "policy context decisions not set")
	case req.GetIdentityContext() == nil:
		return nil, status.Error(codes.InvalidArgument, "identity context not set")
	case req.GetIdentityContext().GetType() == api.IdentityType_IDENTITY_TYPE_UNKNOWN:
		return nil, status.Error(codes.InvalidArgument, "identity type UNKNOWN")
	}
	s.mu.Lock()
	s.paths = append(s.paths, pc.GetPath())
	s.mu.Unlock()

	user, err := s.resolve(ctx, req.GetIdentityContext())
	if err != nil {
		return nil, status.Error(codes.NotFound, "failed to resolve identity context")
	}
	resource := req.GetResourceContext()
	if resource == nil {
		resource = &structpb.Struct{}
	}
	input := map[string]any{
		"user":     user,
		"identity": convert(req.GetIdentityContext()),
		"policy":   convert(pc),
		"resource": convert(resource),
	}
	var sb strings.Builder
	for i, d := range pc.GetDecisions() {
		fmt.Fprintf(&sb, "x%d = data.%s.%s\n", i, pc.GetPath(), d)
	}
	query, err := s.prepare(ctx, sb.String())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "bad query: %v", err)
	}
	results, err := query.Eval(ctx, rego.EvalInput(input))
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "query evaluation failed: %v", err)
	}
	if len(results) == 0 {
		return nil, status.Errorf(codes.InvalidArgument, "undefined results: %s", sb.String())
	}
	resp := &authorizer.IsResponse{}
	for i, d := range pc.GetDecisions() {
		outcome, ok := results[0].Bindings[fmt.Sprintf("x%d", i)].(bool)
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "non-boolean outcome for decision [%s]", d)
		}
		resp.Decisions = append(resp.Decisions, &authorizer.Decision{Decision: d, Is: outcome})
	}
	return resp, nil
}

// resolve is the user object for the identity, as topazd's
// getUserFromIdentityContext: none for NONE, an empty object for MANUAL,
// the directory's user for SUB and (once verified) a JWT's subject.
func (s *Server) resolve(ctx context.Context, id *api.IdentityContext) (map[string]any, error) {
	sub := id.GetIdentity()
	switch id.GetType() {
	case api.IdentityType_IDENTITY_TYPE_NONE:
		return map[string]any{}, nil
	case api.IdentityType_IDENTITY_TYPE_MANUAL:
		if sub == "" {
			return nil, fmt.Errorf("identity value not set")
		}
		return map[string]any{}, nil
	case api.IdentityType_IDENTITY_TYPE_JWT:
		var err error
		if sub, err = jwtSubject(ctx, s.http, sub, time.Now()); err != nil {
			return nil, err
		}
	case api.IdentityType_IDENTITY_TYPE_SUB:
	default:
		return nil, fmt.Errorf("invalid identity type %s", id.GetType())
	}
	if sub == "" {
		return nil, fmt.Errorf("identity value not set")
	}
	o, ok := s.Directory.User(sub)
	if !ok {
		return nil, fmt.Errorf("user %q not found", sub)
	}
	b, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var user map[string]any
	if err := json.Unmarshal(b, &user); err != nil {
		return nil, err
	}
	if user["properties"] == nil {
		user["properties"] = map[string]any{}
	}
	user["key"] = o.ID
	return user, nil
}

// convert is topazd's: the message as JSON with proto field names, enums
// as strings and unset fields included.
func convert(m proto.Message) any {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return nil
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil
	}
	return v
}
