package oidcauth

import "net/http"

// IdentityType says how a Topaz authorizer should resolve an Identity's
// value. The names match Topaz's identity types.
type IdentityType uint8

// The identity types Topaz knows. The zero value is IdentityNone, so an
// Identity that was never set is anonymous.
const (
	// IdentityNone is an anonymous caller; Value is empty.
	IdentityNone IdentityType = iota
	// IdentitySubject is a user known by the IdP's subject (sub).
	IdentitySubject
	// IdentityJWT is a raw JWT the authorizer validates and resolves itself.
	IdentityJWT
	// IdentityManual is a value the authorizer takes as is.
	IdentityManual
)

// String returns Topaz's name for t: NONE, SUB, JWT or MANUAL.
func (t IdentityType) String() string {
	switch t {
	case IdentityNone:
		return "NONE"
	case IdentitySubject:
		return "SUB"
	case IdentityJWT:
		return "JWT"
	case IdentityManual:
		return "MANUAL"
	}
	return "UNKNOWN"
}

// Identity is who a request is made by, in the form an authorizer takes.
type Identity struct {
	Type  IdentityType
	Value string
}

// Anonymous reports whether id names nobody.
func (id Identity) Anonymous() bool { return id.Type == IdentityNone }

// IdentityProvider derives a request's Identity. Auth.Identity is the
// session-based one.
type IdentityProvider func(*http.Request) Identity

// Identity is an IdentityProvider: IdentityNone for anonymous requests (and,
// failing closed, when the session store cannot answer), IdentitySubject
// with the user's subject otherwise.
func (a *Auth) Identity(r *http.Request) Identity {
	u, err := a.User(r)
	if err != nil || u == nil {
		return Identity{}
	}
	return Identity{Type: IdentitySubject, Value: u.Subject}
}
