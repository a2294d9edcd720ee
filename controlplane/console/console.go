package console

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/claude-relay/claude-relay/controlplane/adminclient"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is the path the console is served under.
const Prefix = "/ui/"

// contentSecurityPolicy allows only the console's own script, styles and images: no inline
// script or style, no framing, forms posted only to the console.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"

// Options configures the console.
type Options struct {
	// Admin is the admin API's handler (controlplane.Server.Handler). Required.
	Admin http.Handler
	// Logger receives errors the pages could not show; nil means no logging.
	Logger hclog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Console serves the web console. It is safe for concurrent use.
type Console struct {
	admin http.Handler
	log   hclog.Logger
	now   func() time.Time
	pages map[string]*template.Template
	mux   *http.ServeMux
}

// pageNames are the templates under templates/ that are pages (each defines "content").
var pageNames = []string{"login", "dashboard", "keys", "key", "key_created", "accounts", "config", "audit", "oauth", "error", "usage", "requests", "me", "alerts"}

// New builds the console.
func New(opts Options) (*Console, error) {
	if opts.Admin == nil {
		return nil, errors.New("console: the admin API handler is required")
	}
	if _, err := adminclient.New(adminBase, "", nil); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	c := &Console{admin: opts.Admin, log: opts.Logger, now: opts.Now}
	if c.log == nil {
		c.log = hclog.NewNullLogger()
	}
	c.log = c.log.Named("console")
	if c.now == nil {
		c.now = time.Now
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	c.pages = pages
	c.mux = c.routes()
	return c, nil
}

// parsePages parses each page together with the layout.
func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("layout").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("console: parse layout: %w", err)
	}
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := base.Clone()
		if err == nil {
			t, err = t.ParseFS(templateFS, "templates/"+name+".html")
		}
		if err != nil {
			return nil, fmt.Errorf("console: parse page %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// Handler serves the console under /ui/ (and redirects /ui to it).
func (c *Console) Handler() http.Handler { return securityHeaders(c.mux) }

func (c *Console) routes() *http.ServeMux {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static") // "static" is embedded above
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", staticFiles(http.FileServerFS(static))))
	mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /ui/{$}", c.handleHome)
	mux.HandleFunc("POST /ui/login", c.handleLogin)
	mux.HandleFunc("GET /ui/me", c.handleMe)
	mux.HandleFunc("POST /ui/logout", c.authed(c.handleLogout))
	mux.HandleFunc("GET /ui/keys", c.authed(c.handleKeys))
	mux.HandleFunc("POST /ui/keys", c.authed(c.handleCreateKey))
	mux.HandleFunc("GET /ui/keys/{id}", c.authed(c.handleKey))
	mux.HandleFunc("POST /ui/keys/{id}", c.authed(c.handleUpdateKey))
	mux.HandleFunc("POST /ui/keys/{id}/{action}", c.authed(c.handleKeyAction))
	mux.HandleFunc("GET /ui/accounts", c.authed(c.handleAccounts))
	mux.HandleFunc("POST /ui/accounts", c.authed(c.handleAddAccount))
	mux.HandleFunc("POST /ui/accounts/oauth", c.authed(c.handleOAuthStart))
	mux.HandleFunc("POST /ui/accounts/oauth/finish", c.authed(c.handleOAuthFinish))
	mux.HandleFunc("POST /ui/accounts/{id}/{action}", c.authed(c.handleAccountAction))
	mux.HandleFunc("GET /ui/config", c.authed(c.handleConfig))
	mux.HandleFunc("GET /ui/audit", c.authed(c.handleAudit))
	mux.HandleFunc("GET /ui/usage", c.authed(c.handleUsage))
	mux.HandleFunc("GET /ui/usage/requests", c.authed(c.handleRequests))
	mux.HandleFunc("GET /ui/alerts", c.authed(c.handleAlerts))
	mux.HandleFunc("POST /ui/alerts/{name}/test", c.authed(c.handleTestAlert))
	mux.HandleFunc("GET /ui/usage.csv", c.authed(c.handleUsageCSV))
	mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		c.render(w, r, http.StatusNotFound, "error", view{Title: "Not found", Error: "There is no console page " + r.URL.Path + "."})
	})
	return mux
}

// handleMe is the key holder's page: no admin session; its script reads the key's own view
// from the control plane's GET /v1/relay/usage with the key the holder pastes.
func (c *Console) handleMe(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "me", view{Title: "My relay key"})
}

// securityHeaders sets the headers every console answer carries.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		h.ServeHTTP(w, r)
	})
}

// staticFiles lets browsers keep the console's CSS and script for an hour.
func staticFiles(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

// view is what every page template receives.
type view struct {
	Title string
	// Nav names the current section for the navigation bar.
	Nav    string
	User   string
	CSRF   string
	Notice string
	Error  string
	// Refresh, when set, has the page reload itself every this many seconds.
	Refresh int
	Data    any
}

// render writes the page name with v; pages are never cached (they may carry a secret).
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, v view) {
	t, ok := c.pages[name]
	if !ok {
		c.log.Error("no such page template", "page", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		c.log.Error("render page", "page", name, "path", r.URL.Path, "error", err)
		http.Error(w, "internal error: the page could not be rendered; see the control plane log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
