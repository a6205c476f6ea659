package devidp

import (
	"html/template"
	"log/slog"
	"net/http"
	"strings"
)

// Paths and form fields of the pages a user fills in.
const (
	loginPath        = "/login"
	devicePath       = "/device"
	authRequestParam = "authRequestID"
)

var pages = template.Must(template.New("").Parse(`
{{define "head"}}<!doctype html><html lang="en"><head><meta charset="utf-8"><title>prism-dev-idp</title>
<style>body{font-family:sans-serif;max-width:32em;margin:3em auto}label{display:block;margin:.6em 0}
.error{color:#b00}</style></head><body><h1>prism-dev-idp</h1>{{end}}
{{define "login"}}{{template "head"}}
<p>Sign in to continue to <b>{{.Client}}</b>.</p>
{{if .Error}}<p class="error">{{.Error}}</p>{{end}}
<form method="post" action="` + loginPath + `">
<input type="hidden" name="` + authRequestParam + `" value="{{.ID}}">
<label>User <input name="username" value="{{.User}}" autocomplete="username"></label>
<label>Password <input type="password" name="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button>
</form></body></html>{{end}}
{{define "device"}}{{template "head"}}
<p>A device asks to act as you. Check that the code below is the one it shows, sign in, and approve or deny.</p>
{{if .Error}}<p class="error">{{.Error}}</p>{{end}}
<form method="post" action="` + devicePath + `">
<label>Code <input name="user_code" value="{{.UserCode}}" autocomplete="off"></label>
<label>User <input name="username" value="{{.User}}" autocomplete="username"></label>
<label>Password <input type="password" name="password" autocomplete="current-password"></label>
<button type="submit" name="action" value="approve">Approve</button>
<button type="submit" name="action" value="deny">Deny</button>
</form></body></html>{{end}}
{{define "done"}}{{template "head"}}<p>{{.}}</p></body></html>{{end}}
`))

func render(w http.ResponseWriter, code int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		slog.Error("render page", "page", name, "error", err)
	}
}

type loginPage struct{ ID, Client, User, Error string }

// serveLogin is the code flow's login form: GET shows it, POST checks the
// user's name and password and sends the browser on to the callback.
func (p *Provider) serveLogin(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		render(w, http.StatusBadRequest, "done", "The form could not be read: "+err.Error())
		return
	}
	id := r.Form.Get(authRequestParam)
	a, err := p.store.authRequest(id)
	if err != nil {
		render(w, http.StatusBadRequest, "done", "This sign-in request is unknown or expired: start again from your application.")
		return
	}
	page := loginPage{ID: id, Client: a.clientID, User: p.cfg.User}
	switch r.Method {
	case http.MethodGet:
		render(w, http.StatusOK, "login", page)
	case http.MethodPost:
		page.User = r.PostForm.Get("username")
		if err := p.store.checkPassword(page.User, r.PostForm.Get("password")); err != nil {
			page.Error = "Wrong user name or password."
			render(w, http.StatusUnauthorized, "login", page)
			return
		}
		if err := p.store.completeLogin(id); err != nil {
			render(w, http.StatusBadRequest, "done", "This sign-in request is unknown or expired: start again from your application.")
			return
		}
		http.Redirect(w, r, p.callbackURL(r.Context(), id), http.StatusFound)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

type devicePage struct{ UserCode, User, Error string }

// serveDevice is the device flow's verification page: GET shows the form
// (the user code prefilled from ?user_code=), POST checks the user's name,
// password and code and approves or denies the device.
func (p *Provider) serveDevice(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		render(w, http.StatusBadRequest, "done", "The form could not be read: "+err.Error())
		return
	}
	page := devicePage{UserCode: strings.TrimSpace(r.Form.Get("user_code")), User: p.cfg.User}
	switch r.Method {
	case http.MethodGet:
		render(w, http.StatusOK, "device", page)
	case http.MethodPost:
		page.User = r.PostForm.Get("username")
		if err := p.store.checkPassword(page.User, r.PostForm.Get("password")); err != nil {
			page.Error = "Wrong user name or password."
			render(w, http.StatusUnauthorized, "device", page)
			return
		}
		action := r.PostForm.Get("action")
		if action != "approve" && action != "deny" {
			page.Error = `Choose "Approve" or "Deny".`
			render(w, http.StatusBadRequest, "device", page)
			return
		}
		if err := p.store.answerDevice(page.UserCode, action == "approve"); err != nil {
			page.Error = "This code is unknown, expired or already answered: check the code your device shows."
			render(w, http.StatusBadRequest, "device", page)
			return
		}
		if action == "approve" {
			render(w, http.StatusOK, "done", "Device approved: you can go back to it now.")
		} else {
			render(w, http.StatusOK, "done", "Device denied.")
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}
