package console

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminclient"
)

// cookieName is the console's session cookie; it holds the admin session token.
const cookieName = "claude_relay_console"

// maxFormBytes caps a console form.
const maxFormBytes = 64 << 10

// session is a console request's admin session.
type session struct {
	token string
	user  string
	api   *adminclient.Client
}

// csrf is the token every form of this session carries: derived from the session token, which
// a page of another origin can neither read (HttpOnly cookie) nor compute.
func (s session) csrf() string { return csrfToken(s.token) }

func csrfToken(token string) string {
	sum := sha256.Sum256([]byte("claude-relay console csrf\x00" + token))
	return hex.EncodeToString(sum[:16])
}

type sessionKey struct{}

func sessionFrom(ctx context.Context) session {
	s, _ := ctx.Value(sessionKey{}).(session)
	return s
}

// view returns a view for this session's pages.
func (s session) view(title, nav string) view {
	return view{Title: title, Nav: nav, User: s.user, CSRF: s.csrf()}
}

// authed runs h for a request with a live admin session, and otherwise shows the login page
// (saying why the session ended). A state-changing request must also come from the console's
// origin and carry the session's CSRF token.
func (c *Console) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie(cookieName)
		if err != nil || ck.Value == "" {
			c.showLogin(w, r, http.StatusUnauthorized, "", "Log in to continue.")
			return
		}
		if r.Method != http.MethodGet && !c.checkForm(w, r, ck.Value) {
			return
		}
		api := c.client(r, ck.Value)
		who, err := api.WhoAmI(r.Context())
		switch {
		case adminclient.IsUnauthorized(err):
			clearCookie(w, r)
			c.showLogin(w, r, http.StatusUnauthorized, "", "Your session ended: "+apiMessage(err)+".")
			return
		case err != nil:
			c.fail(w, r, view{Title: "Error"}, err)
			return
		}
		s := session{token: ck.Value, user: who.Username, api: api}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
	}
}

// checkForm refuses a state change that did not come from a console page: another origin, or
// no or a wrong CSRF token. token "" checks the origin only (the login form has no session).
func (c *Console) checkForm(w http.ResponseWriter, r *http.Request, token string) bool {
	if !sameOrigin(r) {
		c.log.Warn("refused a console form from another origin", "origin", r.Header.Get("Origin"), "path", r.URL.Path)
		c.render(w, r, http.StatusForbidden, "error", view{Title: "Refused", Error: "This form came from another site; the console refused it. Open the console and try again."})
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		c.render(w, r, http.StatusBadRequest, "error", view{Title: "Bad form", Error: "The form could not be read: " + err.Error()})
		return false
	}
	if token == "" {
		return true
	}
	want := csrfToken(token)
	if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(want)) != 1 {
		c.render(w, r, http.StatusForbidden, "error", view{Title: "Refused", Error: "The form's security token is missing or stale (the page was older than your session); reload the page and try again."})
		return false
	}
	return true
}

// sameOrigin reports whether a state-changing request came from this host's pages: its
// Origin (sent by browsers with every POST) names this host; or the browser hid the origin
// ("null", or none from an older browser) and its Sec-Fetch-Site, which no page can set,
// says same-origin (or is absent: not a browser, so no cross-site request forgery).
func sameOrigin(r *http.Request) bool {
	site := r.Header.Get("Sec-Fetch-Site")
	switch o := r.Header.Get("Origin"); o {
	case "", "null":
		return site == "same-origin" || site == "" && o == ""
	default:
		u, err := url.Parse(o)
		return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
	}
}

// secure reports whether the browser reached the console over HTTPS (directly, or through a
// proxy saying so: a forged header only makes the cookie stricter).
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func setCookie(w http.ResponseWriter, r *http.Request, token string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: token, Path: Prefix, Expires: expires,
		HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode,
	})
}

func clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: "", Path: Prefix, MaxAge: -1,
		HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode,
	})
}

// loginData is the login page's data.
type loginData struct {
	Username string
	Next     string
}

// showLogin renders the login page; next is where a GET should return after logging in.
func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, username, notice string) {
	next := ""
	if r.Method == http.MethodGet && r.URL.Path != Prefix {
		next = r.URL.RequestURI()
	}
	v := view{Title: "Log in", Notice: notice, Data: loginData{Username: username, Next: next}}
	c.render(w, r, status, "login", v)
}

// handleHome is the dashboard with a session and the login page without one: GET /ui/
// answers 200 either way.
func (c *Console) handleHome(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(cookieName); err != nil || ck.Value == "" {
		c.showLogin(w, r, http.StatusOK, "", notices[r.URL.Query().Get("done")])
		return
	}
	c.authed(c.handleDashboard)(w, r)
}

// handleLogin logs in through the admin API's login, with its throttling and lockout.
func (c *Console) handleLogin(w http.ResponseWriter, r *http.Request) {
	if !c.checkForm(w, r, "") {
		return
	}
	user, pass := strings.TrimSpace(r.PostFormValue("username")), r.PostFormValue("password")
	next := r.PostFormValue("next")
	res, err := c.client(r, "").Login(r.Context(), user, pass)
	if err != nil {
		var ae *adminclient.APIError
		status := http.StatusBadGateway
		if errors.As(err, &ae) {
			status = ae.StatusCode
		} else {
			c.log.Error("login through the admin API", "error", err)
		}
		v := view{Title: "Log in", Error: loginError(err), Data: loginData{Username: user, Next: next}}
		c.render(w, r, status, "login", v)
		return
	}
	setCookie(w, r, res.Token, res.ExpiresAt)
	http.Redirect(w, r, localPath(next), http.StatusSeeOther)
}

// loginError says why a login failed, in the admin API's words.
func loginError(err error) string {
	var ae *adminclient.APIError
	if !errors.As(err, &ae) {
		return "The control plane could not check the password; see its log."
	}
	if len(ae.Fields) > 0 {
		return "Enter a username and a password."
	}
	return capitalize(apiMessage(err)) + "."
}

// localPath returns next when it is a console path, else the console's home: a login never
// sends the browser off the console.
func localPath(next string) string {
	if strings.HasPrefix(next, Prefix) && !strings.HasPrefix(next, "//") && !strings.ContainsAny(next, "\\\r\n") {
		return next
	}
	return Prefix
}

// handleLogout revokes the session token and clears the cookie.
func (c *Console) handleLogout(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	if err := s.api.Logout(r.Context()); err != nil && !adminclient.IsUnauthorized(err) {
		c.fail(w, r, s.view("Error", ""), err)
		return
	}
	clearCookie(w, r)
	http.Redirect(w, r, Prefix+"?done=logged-out", http.StatusSeeOther)
}
