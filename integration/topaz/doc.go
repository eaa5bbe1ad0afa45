// Package topaz is a Topaz stand-in for oidcauth's authorization tests, and
// the tests themselves.
//
// No Topaz binary can be installed where the tests run, so Server plays
// its part: an in-process gRPC server on loopback implementing
// aserto.authorizer.v2.Authorizer (Is) from go-authorizer's generated
// stubs. Like topazd it evaluates real Rego with OPA (data.<path>.<decision>
// for each decision asked) over the input topazd builds:
//
//	input.identity  the identity context {"identity", "type"}
//	input.user      the directory object the identity resolves to ({} for
//	                NONE and MANUAL); an unknown SUB or JWT subject is
//	                gRPC NotFound, as in topazd
//	input.policy    the policy context {"path", "decisions"}
//	input.resource  the resource context
//
// Its directory is loaded from Topaz import files (manifest.yaml,
// {"objects": [...]}, {"relations": [...]}), and policies can call the
// ds.check built-in, answered from that directory with the manifest's
// permissions (unions of relations). JWT identities are verified as topazd
// does: the issuer's discovery document gives the JWKS, and the token's
// subject is then resolved like a SUB.
//
// It is a stand-in, not Topaz: no policy bundles, decision logs, other
// APIs or manifest arrows.
package topaz
