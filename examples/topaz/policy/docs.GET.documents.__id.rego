# GET /documents/{id}: who may read a document. oidcauth's Middleware asks
# for this package (the route's automatic policy path) with the resource
# context {"id": "<the document id>"}.
package docs.GET.documents.__id

import rego.v1

default allowed := false

# Viewers (alice) may read every document.
allowed if "viewer" in input.user.properties.roles

# Anyone else may read the documents the directory gives them can_read on
# (carol owns document 1). Bob has neither, so he reads nothing.
allowed if ds.check({
	"object_type": "document",
	"object_id": input.resource.id,
	"relation": "can_read",
	"subject_type": "user",
	"subject_id": input.user.id,
})
