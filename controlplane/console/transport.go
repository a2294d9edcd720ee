package console

import (
	"bytes"
	"fmt"
	"io"
	"net/http"

	"github.com/claude-relay/claude-relay/controlplane/adminclient"
)

// adminBase is the address the console's admin client names; requests never leave the
// process (see handlerTransport), so it only has to be a valid URL.
const adminBase = "http://admin.console.internal"

// maxAdminResponse bounds what one in-process admin call may answer.
const maxAdminResponse = 16 << 20

// handlerTransport sends the console's admin API calls straight to the admin API's handler,
// as if they came from the browser's own connection: the same remote address and
// X-Forwarded-For, so the login throttle and the audit log see the person, not the console.
type handlerTransport struct {
	admin  http.Handler
	remote string
	xff    []string
}

// RoundTrip serves req with the admin handler and returns its recorded answer.
func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	in := req.Clone(req.Context())
	in.RemoteAddr = t.remote
	in.RequestURI = req.URL.RequestURI()
	in.Host = req.URL.Host
	in.Header.Del("X-Forwarded-For")
	for _, v := range t.xff {
		in.Header.Add("X-Forwarded-For", v)
	}
	rec := &recorder{header: http.Header{}}
	t.admin.ServeHTTP(rec, in)
	if rec.overflow {
		return nil, fmt.Errorf("%s %s: answer longer than %d bytes", req.Method, req.URL.Path, maxAdminResponse)
	}
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.header, Body: io.NopCloser(bytes.NewReader(rec.body.Bytes())),
		ContentLength: int64(rec.body.Len()), Request: req,
	}, nil
}

// recorder is the http.ResponseWriter an in-process admin call writes to.
type recorder struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	overflow bool
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.body.Len()+len(p) > maxAdminResponse {
		r.overflow = true
		return 0, fmt.Errorf("admin answer longer than %d bytes", maxAdminResponse)
	}
	return r.body.Write(p)
}

// client is an admin API client for the browser request r carrying the session token.
func (c *Console) client(r *http.Request, token string) *adminclient.Client {
	hc := &http.Client{Transport: handlerTransport{admin: c.admin, remote: r.RemoteAddr, xff: r.Header.Values("X-Forwarded-For")}}
	ac, _ := adminclient.New(adminBase, token, hc) // adminBase is valid: New checked it
	return ac
}
