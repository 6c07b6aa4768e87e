package consent

import (
	"html/template"
	"net/http"
)

// Pages the function shows; the id names the page's <main> element.
const (
	pageConnected    = "connected"
	pageDenied       = "denied"
	pageError        = "error"
	pageDisconnected = "disconnected"
	pageConfirm      = "confirm"
)

// pageData fills a page. Links are built from PUBLIC_URL, never from the request.
type pageData struct {
	Email    string
	Message  string
	Retry    string // "try again" link
	NotFound bool   // disconnect of an address that was never connected
	Domain   bool   // the disconnected mailbox was watched through the organization's domain-wide delegation
	Token    string // confirmation form: its one-time token
	Action   string // confirmation form: where it posts
}

func (h *Handler) render(w http.ResponseWriter, page string, status int, d pageData) {
	if d.Retry == "" && page != pageConnected && page != pageDisconnected && page != pageConfirm {
		d.Retry = h.cfg.PublicURL + "/connect"
	}
	writePage(w, page, status, d)
}

func writePage(w http.ResponseWriter, page string, status int, d pageData) {
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	formAction := "'none'"
	if page == pageConfirm {
		formAction = "'self'"
	}
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action "+formAction+"; frame-ancestors 'none'")
	w.WriteHeader(status)
	pages.ExecuteTemplate(w, page, d)
}

var pages = template.Must(template.New("").Parse(`
{{define "top"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.}}</title><style>
body{font-family:system-ui,sans-serif;background:#f6f7f9;color:#202124;margin:0}
main{max-width:30rem;margin:4rem auto;background:#fff;border:1px solid #dadce0;border-radius:8px;padding:2rem}
h1{font-size:1.4rem;font-weight:500}a{color:#1a73e8}
</style></head><body>{{end}}
{{define "bottom"}}</main></body></html>
{{end}}
{{define "connected"}}{{template "top" "Gmail connected"}}<main id="connected">
<h1>Gmail connected</h1>
<p>New mail in <b id="email">{{.Email}}</b> will be reported from now on. You can close this window.</p>
{{template "bottom"}}{{end}}
{{define "denied"}}{{template "top" "Access not granted"}}<main id="denied">
<h1>Access not granted</h1>
<p>{{.Message}} Nothing was stored.</p>
<p><a href="{{.Retry}}">Try again</a></p>
{{template "bottom"}}{{end}}
{{define "error"}}{{template "top" "Something went wrong"}}<main id="error">
<h1>Something went wrong</h1>
<p id="message">{{.Message}}</p>
<p><a href="{{.Retry}}">Start again</a></p>
{{template "bottom"}}{{end}}
{{define "confirm"}}{{template "top" "Disconnect Gmail?"}}<main id="confirm">
<h1>Disconnect Gmail?</h1>
<p>You are signed in as <b id="email">{{.Email}}</b>. Disconnecting stops reporting new mail, revokes this application's access and deletes what it stored.</p>
<form method="post" action="{{.Action}}"><input type="hidden" name="token" value="{{.Token}}">
<button id="confirm-disconnect" type="submit">Disconnect</button></form>
{{template "bottom"}}{{end}}
{{define "disconnected"}}{{template "top" "Gmail disconnected"}}<main id="disconnected">
<h1>Gmail disconnected</h1>
{{if .NotFound}}<p>No mailbox was connected for <b id="email">{{.Email}}</b>; there was nothing to disconnect.</p>
{{else if .Domain}}<p><b id="email">{{.Email}}</b> is no longer watched. Your organization set this application up for its whole domain; this mailbox now stays out of that, even while the organization's setup lists it. To have it watched again, connect it through the application.</p>
{{else}}<p><b id="email">{{.Email}}</b> is no longer watched. Access was revoked and the stored token deleted.</p>
{{end}}{{template "bottom"}}{{end}}
`))
