package deploytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config"
)

// ngxDirective is one nginx directive, with its block when it has one.
type ngxDirective struct {
	name     string
	args     []string
	children []*ngxDirective
	block    bool
	line     int
}

// parseNginx parses nginx configuration syntax: words, quoted strings, ';',
// blocks and '#' comments.
func parseNginx(src string) ([]*ngxDirective, error) {
	type tok struct {
		text   string
		quoted bool
		line   int
	}
	var toks []tok
	line := 1
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == ';' || c == '{' || c == '}':
			toks = append(toks, tok{text: string(c), line: line})
			i++
		case c == '"' || c == '\'':
			var b strings.Builder
			start := line
			i++
			for ; i < len(src) && src[i] != c; i++ {
				if src[i] == '\\' && i+1 < len(src) {
					i++
				}
				if src[i] == '\n' {
					line++
				}
				b.WriteByte(src[i])
			}
			if i >= len(src) {
				return nil, fmt.Errorf("line %d: unterminated quoted string", start)
			}
			i++
			toks = append(toks, tok{text: b.String(), quoted: true, line: start})
		default:
			j := i
			for j < len(src) && !strings.ContainsRune(" \t\r\n;{}#", rune(src[j])) {
				j++
			}
			toks = append(toks, tok{text: src[i:j], line: line})
			i = j
		}
	}
	pos := 0
	var parse func(depth int) ([]*ngxDirective, error)
	parse = func(depth int) ([]*ngxDirective, error) {
		var out []*ngxDirective
		for pos < len(toks) {
			t := toks[pos]
			if !t.quoted && t.text == "}" {
				if depth == 0 {
					return nil, fmt.Errorf("line %d: unexpected }", t.line)
				}
				pos++
				return out, nil
			}
			d := &ngxDirective{name: t.text, line: t.line}
			pos++
			for ; ; pos++ {
				if pos >= len(toks) {
					return nil, fmt.Errorf("line %d: directive %s is not terminated", d.line, d.name)
				}
				a := toks[pos]
				if !a.quoted && a.text == ";" {
					pos++
					break
				}
				if !a.quoted && a.text == "{" {
					pos++
					children, err := parse(depth + 1)
					if err != nil {
						return nil, err
					}
					d.children, d.block = children, true
					break
				}
				if !a.quoted && a.text == "}" {
					return nil, fmt.Errorf("line %d: directive %s is not terminated", d.line, d.name)
				}
				d.args = append(d.args, a.text)
			}
			out = append(out, d)
		}
		if depth > 0 {
			return nil, fmt.Errorf("unterminated block")
		}
		return out, nil
	}
	return parse(0)
}

// find returns the directives called name among ds.
func find(ds []*ngxDirective, name string) []*ngxDirective {
	var out []*ngxDirective
	for _, d := range ds {
		if d.name == name {
			out = append(out, d)
		}
	}
	return out
}

// effective returns the directives called name that apply in the innermost
// of the nested contexts given (outermost first): nginx inherits a directive
// from the enclosing level only when the inner level sets none of it.
func effective(name string, levels ...[]*ngxDirective) []*ngxDirective {
	for i := len(levels) - 1; i >= 0; i-- {
		if ds := find(levels[i], name); len(ds) > 0 {
			return ds
		}
	}
	return nil
}

// nginxSeconds parses an nginx time such as 600s, 10m or 600.
func nginxSeconds(v string) (time.Duration, bool) {
	m := regexp.MustCompile(`^(\d+)(ms|s|m|h|d)?$`).FindStringSubmatch(v)
	if m == nil {
		return 0, false
	}
	n, _ := strconv.Atoi(m[1])
	unit := map[string]time.Duration{"": time.Second, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[m[2]]
	return time.Duration(n) * unit, true
}

// nginxBytes parses an nginx size such as 10M, 512k or 1048576.
func nginxBytes(v string) (int64, bool) {
	m := regexp.MustCompile(`^(\d+)([kKmMgG])?$`).FindStringSubmatch(v)
	if m == nil {
		return 0, false
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	shift := map[string]uint{"": 0, "k": 10, "m": 20, "g": 30}[strings.ToLower(m[2])]
	return n << shift, true
}

func parseNginxConf(t *testing.T) []*ngxDirective {
	t.Helper()
	ds, err := parseNginx(readRepoFile(t, nginxConfPath))
	if err != nil {
		t.Fatalf("parse %s: %v", nginxConfPath, err)
	}
	return ds
}

func TestNginxConfBalancesOverSidecars(t *testing.T) {
	ds := parseNginxConf(t)
	ups := find(ds, "upstream")
	if len(ups) != 1 || len(ups[0].args) != 1 {
		t.Fatalf("upstream blocks: got %d, want one named upstream", len(ups))
	}
	up := ups[0]
	if len(find(up.children, "least_conn")) != 1 {
		t.Errorf("upstream %s: got no least_conn, want least_conn", up.args[0])
	}
	var servers []string
	for _, s := range find(up.children, "server") {
		servers = append(servers, s.args[0])
		if !slices.Contains(s.args, "max_fails=3") || !slices.Contains(s.args, "fail_timeout=30s") {
			t.Errorf("upstream server %v: want max_fails=3 fail_timeout=30s", s.args)
		}
	}
	want := []string{"127.0.0.1:3000", "127.0.0.1:3001", "127.0.0.1:3002"}
	if !slices.Equal(servers, want) {
		t.Errorf("upstream servers: got %v, want %v", servers, want)
	}
	for _, srv := range find(ds, "server") {
		for _, loc := range find(srv.children, "location") {
			for _, pp := range find(loc.children, "proxy_pass") {
				if pp.args[0] != "http://"+up.args[0] {
					t.Errorf("location %v: proxy_pass got %s, want http://%s", loc.args, pp.args[0], up.args[0])
				}
			}
		}
	}
}

// TestNginxConfKeepsSSEUnbuffered checks, for every proxied location, the
// directives that apply there once nginx's inheritance rules are followed.
func TestNginxConfKeepsSSEUnbuffered(t *testing.T) {
	ds := parseNginxConf(t)
	var tlsServer *ngxDirective
	for _, srv := range find(ds, "server") {
		for _, l := range find(srv.children, "listen") {
			if slices.Contains(l.args, "ssl") {
				tlsServer = srv
			}
		}
	}
	if tlsServer == nil {
		t.Fatalf("%s: got no server with listen … ssl", nginxConfPath)
	}
	one := func(name string, levels ...[]*ngxDirective) []string {
		ds := effective(name, levels...)
		if len(ds) != 1 {
			return nil
		}
		return ds[0].args
	}
	srv := tlsServer.children
	if got := one("ssl_protocols", ds, srv); !slices.Equal(got, []string{"TLSv1.2", "TLSv1.3"}) {
		t.Errorf("ssl_protocols: got %v, want [TLSv1.2 TLSv1.3]", got)
	}
	for _, name := range []string{"ssl_certificate", "ssl_certificate_key"} {
		if got := one(name, ds, srv); len(got) != 1 {
			t.Errorf("%s: got %v, want one path", name, got)
		}
	}
	proxied := 0
	for _, loc := range find(srv, "location") {
		levels := [][]*ngxDirective{ds, srv, loc.children}
		name := strings.Join(loc.args, " ")
		t.Run(name, func(t *testing.T) {
			// Security headers reach every response, including the 413 page:
			// add_header in a location drops the server's ones.
			headers := map[string]string{}
			for _, h := range effective("add_header", levels...) {
				headers[h.args[0]] = h.args[1]
			}
			if !strings.Contains(headers["Strict-Transport-Security"], "max-age=") {
				t.Errorf("Strict-Transport-Security: got %q, want an HSTS max-age", headers["Strict-Transport-Security"])
			}
			if headers["X-Frame-Options"] != "DENY" {
				t.Errorf("X-Frame-Options: got %q, want DENY", headers["X-Frame-Options"])
			}
			if headers["X-Content-Type-Options"] != "nosniff" {
				t.Errorf("X-Content-Type-Options: got %q, want nosniff", headers["X-Content-Type-Options"])
			}
			size := one("client_max_body_size", levels...)
			if n, ok := nginxBytes(strings.Join(size, "")); !ok || n != config.DefaultMaxBodyBytes {
				t.Errorf("client_max_body_size: got %v, want 10M (the relay's %d bytes)", size, config.DefaultMaxBodyBytes)
			}
			if len(find(loc.children, "proxy_pass")) == 0 {
				return
			}
			proxied++
			for _, tc := range []struct{ name, want string }{
				{"proxy_http_version", "1.1"},
				{"proxy_buffering", "off"},
				{"proxy_request_buffering", "off"},
			} {
				if got := one(tc.name, levels...); !slices.Equal(got, []string{tc.want}) {
					t.Errorf("%s: got %v, want %s", tc.name, got, tc.want)
				}
			}
			for _, name := range []string{"proxy_read_timeout", "proxy_send_timeout"} {
				got := one(name, levels...)
				if d, ok := nginxSeconds(strings.Join(got, "")); !ok || d < config.DefaultRequestTimeout {
					t.Errorf("%s: got %v, want at least %v (REQUEST_TIMEOUT)", name, got, config.DefaultRequestTimeout)
				}
			}
			set := map[string]string{}
			for _, h := range effective("proxy_set_header", levels...) {
				set[h.args[0]] = h.args[1]
			}
			if v, ok := set["Connection"]; !ok || v != "" {
				t.Errorf(`proxy_set_header Connection: got %q (set: %v), want "" for upstream keepalive`, v, ok)
			}
			if v := set["X-Forwarded-For"]; v != "$proxy_add_x_forwarded_for" && v != "$remote_addr" {
				t.Errorf("proxy_set_header X-Forwarded-For: got %q, want $proxy_add_x_forwarded_for or $remote_addr", v)
			}
			if loc.args[len(loc.args)-1] == "/health" {
				if got := one("access_log", levels...); !slices.Equal(got, []string{"off"}) {
					t.Errorf("access_log: got %v, want off for health checks", got)
				}
			}
		})
	}
	if proxied < 2 {
		t.Errorf("proxied locations: got %d, want / and = /health", proxied)
	}
	health := false
	for _, loc := range find(srv, "location") {
		health = health || slices.Equal(loc.args, []string{"=", "/health"})
	}
	if !health {
		t.Errorf("got no location = /health, want one without access log")
	}
}

// TestNginxConfPassesNginxT runs nginx -t on the file inside a minimal main
// configuration, with paths moved to a temporary directory and a throwaway
// certificate.
func TestNginxConfPassesNginxT(t *testing.T) {
	nginx, ok := lookTool("nginx")
	if !ok {
		t.Skip("nginx is not installed; install it to run nginx -t on docker/nginx.conf")
	}
	dir := t.TempDir()
	cert, key := writeSelfSignedCert(t, dir)
	site := readRepoFile(t, nginxConfPath)
	for old, repl := range map[string]string{
		"/etc/letsencrypt/live/relay.example.com/fullchain.pem": cert,
		"/etc/letsencrypt/live/relay.example.com/privkey.pem":   key,
		"/var/log/nginx/": dir + "/",
	} {
		if !strings.Contains(site, old) {
			t.Fatalf("%s: got no %s to rewrite", nginxConfPath, old)
		}
		site = strings.ReplaceAll(site, old, repl)
	}
	sitePath := filepath.Join(dir, "claude-relay.conf")
	main := fmt.Sprintf(`pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events {}
http {
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    access_log %[1]s/access.log;
    include %[2]s;
}
`, dir, sitePath)
	mainPath := filepath.Join(dir, "nginx.conf")
	for path, text := range map[string]string{sitePath: site, mainPath: main} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatalf("write %s: %v", path, err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, nginx, "-t", "-q", "-p", dir, "-e", "stderr", "-c", mainPath).CombinedOutput()
	if err != nil {
		t.Errorf("nginx -t: got %v\n%s\nwant success", err, out)
	}
}

// writeSelfSignedCert writes a throwaway certificate and key for nginx -t.
func writeSelfSignedCert(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "relay.example.com"},
		DNSNames:     []string{"relay.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatalf("marshal key: %v", err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatalf("write certificate: %v", err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatalf("write key: %v", err)
	}
	return certPath, keyPath
}
