# GET /whoami: allowed only when input has the shape topazd gives it, so
# that a test notices any difference in what oidcauth sends.
package docs.GET.whoami

import rego.v1

default allowed := false

allowed if {
	input.identity == {"type": "IDENTITY_TYPE_SUB", "identity": "user-alice"}
	input.user.id == "user-alice"
	input.user.key == "user-alice"
	input.user.type == "user"
	input.user.properties.email == "alice@example.com"
	input.policy == {"path": "docs.GET.whoami", "decisions": ["allowed"]}
	input.resource == {}
}
