# GET /orgs/{org}/docs/{id}: a route with several path values. Members of
# an organization read its documents.
package docs.GET.orgs.__org.docs.__id

import rego.v1

default allowed := false

allowed if {
	input.user.properties.org == input.resource.org
	input.resource.id != ""
}
