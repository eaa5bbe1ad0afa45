# docs.check answers oidcauth's RequireRelation and Authorizer.Check, whose
# resource context is {"object_type", "object_id", "relation",
# "subject_type": "user"}. PUT /documents/{id} asks for can_write.
package docs.check

import rego.v1

default allowed := false

# Editors (alice) may write every document.
allowed if {
	input.resource.object_type == "document"
	input.resource.relation == "can_write"
	"editor" in input.user.properties.roles
}

# Otherwise the directory decides: its manifest grants can_write to a
# document's owners and writers (carol owns document 1).
allowed if ds.check({
	"object_type": input.resource.object_type,
	"object_id": input.resource.object_id,
	"relation": input.resource.relation,
	"subject_type": input.resource.subject_type,
	"subject_id": input.user.id,
})
