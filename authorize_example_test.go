package oidcauth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	authorizer "github.com/aserto-dev/go-authorizer/aserto/authorizer/v2"
	"google.golang.org/grpc"

	"github.com/oidcauth/oidcauth"
)

// topazStub stands in for Topaz in this example: it prints what it is
// asked and allows no one.
type topazStub struct{}

func (topazStub) Is(_ context.Context, req *authorizer.IsRequest, _ ...grpc.CallOption) (*authorizer.IsResponse, error) {
	res, _ := json.Marshal(req.GetResourceContext().AsMap())
	fmt.Println("Topaz is asked:", req.GetPolicyContext().GetPath(), req.GetIdentityContext().GetType(), string(res))
	return &authorizer.IsResponse{Decisions: []*authorizer.Decision{{Decision: "allowed", Is: false}}}, nil
}

func ExampleNewAuthorizer() {
	auth, err := oidcauth.New(context.Background(), exampleConfig())
	if err != nil {
		log.Fatal(err)
	}
	// Usually:
	//	tc, err := oidcauth.TopazConfigFromEnv()
	//	client, err := tc.Connect() // go-aserto's *az.Client
	var client oidcauth.AuthorizerClient = topazStub{}
	az, err := oidcauth.NewAuthorizer(client, oidcauth.AuthorizerConfig{
		PolicyRoot: "myapp",
		Auth:       auth, // the session's user is the identity
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /documents/{id}", az.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "document", r.PathValue("id"))
	})))
	handler := auth.Handler(mux)

	// An anonymous API client, denied: 401, as RequireUser would answer.
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest("GET", "/documents/42", nil))
	fmt.Print(rec.Code, " ", rec.Body.String())
	// Output:
	// Topaz is asked: myapp.GET.documents.__id IDENTITY_TYPE_NONE {"id":"42"}
	// 401 {"error":"unauthenticated"}
}
