package demo

import (
	"html/template"
	"net/http"
)

// Render writes page for data (a user, or nil) as an uncacheable HTML
// response.
func Render(w http.ResponseWriter, page *template.Template, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = page.Execute(w, data)
}

const layout = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>oidcauth demo</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#1d2430}
header{display:flex;justify-content:space-between;align-items:center;border-bottom:1px solid #dde3ea;padding-bottom:.75rem}
a,button{font:inherit;color:#0b5cad}
button{background:none;border:1px solid #0b5cad;border-radius:6px;padding:.3rem .8rem;cursor:pointer}
.card{border:1px solid #dde3ea;border-radius:10px;padding:1rem 1.25rem;margin-top:1.5rem}
code{background:#f2f4f7;padding:.1rem .3rem;border-radius:4px}
</style></head><body>
<header><strong>oidcauth demo</strong>
<nav>{{if .}}<form method="post" action="/logout" style="display:inline"><button type="submit">Log out</button></form>{{else}}<a href="/login">Log in</a>{{end}}</nav>
</header>
{{template "body" .}}
</body></html>`

// HomePage is the demo's public page: a login link, or the user and a
// logout button.
var HomePage = template.Must(template.Must(template.New("home").Parse(layout)).Parse(`{{define "body"}}
<div class="card">{{if .}}
<p>Signed in as <strong id="user-name">{{.Name}}</strong>{{with .Email}} ({{.}}){{end}}.</p>
<p>See your <a href="/private">private page</a> or <a href="/me">/me</a> as JSON.</p>
{{else}}
<p>You are not signed in. <a href="/login">Log in</a>, or open the <a href="/private">private page</a> to be asked to.</p>
{{end}}</div>{{end}}`))

// PrivatePage is the demo's page for signed-in users.
var PrivatePage = template.Must(template.Must(template.New("private").Parse(layout)).Parse(`{{define "body"}}
<div class="card"><h1>Private page</h1>
<p>Hello, <strong id="user-name">{{.Name}}</strong>. Only signed-in users see this.</p>
<p>Subject: <code>{{.Subject}}</code>{{with .PreferredUsername}}, username: <code>{{.}}</code>{{end}}</p>
<p><a href="/">Home</a></p></div>{{end}}`))
