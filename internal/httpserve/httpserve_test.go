package httpserve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/testutil"
)

// slack is what a loaded machine may add to a bound.
const slack = 5 * time.Second

func serveWith(t *testing.T, body time.Duration, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(Timeouts{Body: body}.Handler(h))
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestAResponseLongerThanTheBodyTimeoutIsNotCut(t *testing.T) {
	const bodyTimeout = 200 * time.Millisecond
	addr := serveWith(t, bodyTimeout, func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// Stream for several body timeouts after the body: the read deadline must be gone,
		// or the server's watch for the client leaving would cancel the request.
		w.WriteHeader(http.StatusOK)
		for i := 0; i < 4; i++ {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(bodyTimeout):
			}
			fmt.Fprintf(w, "tick %d\n", i)
			http.NewResponseController(w).Flush()
		}
		io.WriteString(w, "done\n")
	})
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			var body io.Reader = strings.NewReader(`{"hello":"world"}`)
			if chunked {
				body = io.MultiReader(body) // unknown length: sent chunked
			}
			resp, err := http.Post("http://"+addr, "application/json", body)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil || !strings.HasSuffix(string(b), "done\n") {
				t.Fatalf("got %q, %v; want the whole stream", b, err)
			}
		})
	}
}

func TestAClientLeavingAfterItsBodyStillCancelsTheRequest(t *testing.T) {
	canceled := make(chan bool, 1)
	addr := serveWith(t, time.Minute, func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		select {
		case <-r.Context().Done():
			canceled <- true
		case <-time.After(slack):
			canceled <- false
		}
	})
	c := dial(t, addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
	time.Sleep(100 * time.Millisecond)
	c.Close()
	if !<-canceled {
		t.Fatal("the request's context was not canceled when the client left")
	}
}

func TestABodyThatPausesLongerThanTheTimeoutIsCut(t *testing.T) {
	const bodyTimeout = 300 * time.Millisecond
	got := make(chan error, 1)
	addr := serveWith(t, bodyTimeout, func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		got <- err
		w.WriteHeader(http.StatusRequestTimeout)
	})
	c := dial(t, addr)
	start := time.Now()
	// Half the body at once, then a pause.
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
	err := <-got
	var te *BodyTimeoutError
	if !errors.As(err, &te) || te.Slow || te.Received != 5 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want an idle BodyTimeoutError after 5 bytes", err)
	}
	if took := time.Since(start); took < bodyTimeout || took > bodyTimeout+slack {
		t.Errorf("cut after %s, want about %s", took, bodyTimeout)
	}
	if want := "no byte of the request body arrived for 300ms (5 bytes received)"; err.Error() != want {
		t.Errorf("got message %q, want %q", err, want)
	}
}

func TestABodyMovingSlowerThanTheMinimumRateIsCut(t *testing.T) {
	const bodyTimeout = 500 * time.Millisecond
	got := make(chan error, 1)
	addr := serveWith(t, bodyTimeout, func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		got <- err
	})
	c := dial(t, addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
	defer testutil.Trickle(c, "x", bodyTimeout/4)()
	var te *BodyTimeoutError
	select {
	case err := <-got:
		if !errors.As(err, &te) || !te.Slow {
			t.Fatalf("got %v, want a rate BodyTimeoutError", err)
		}
	case <-time.After(bodyTimeout + slack):
		t.Fatal("a body moving a byte per quarter timeout was not cut")
	}
}

func TestARefusalBeforeTheBodyClosesTheConnectionWithinRefusalDrain(t *testing.T) {
	addr := serveWith(t, time.Minute, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no key", http.StatusUnauthorized)
	})
	c := dial(t, addr)
	start := time.Now()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(RefusalDrain + slack))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("connection not closed within %s of a refusal: %v (got %q)", RefusalDrain+slack, err, b)
	}
	if !strings.HasPrefix(string(b), "HTTP/1.1 401") {
		t.Fatalf("got %q, want the 401", b)
	}
	if took := time.Since(start); took > RefusalDrain+slack {
		t.Errorf("closed after %s", took)
	}
}

func TestARefusedClientWhoseBodyIsOnItsWayReadsTheAnswerAndKeepsItsConnection(t *testing.T) {
	addr := serveWith(t, time.Minute, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no key", http.StatusUnauthorized)
	})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	body := strings.Repeat("x", 64<<10)
	for i := 0; i < 2; i++ {
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Close {
			t.Fatalf("request %d: got %d (close %v), want a 401 on a kept connection", i, resp.StatusCode, resp.Close)
		}
	}
}

// deadlineRecorder is an httptest.ResponseRecorder that also takes read deadlines, as Go's
// HTTP/1 response writer does.
type deadlineRecorder struct {
	*httptest.ResponseRecorder
	deadline time.Time
}

func (d *deadlineRecorder) SetReadDeadline(t time.Time) error { d.deadline = t; return nil }

func TestTheBodyBoundsAllocateNothingPerRequest(t *testing.T) {
	buf := make([]byte, 64)
	h := Timeouts{Body: time.Minute}.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for {
			if _, err := r.Body.Read(buf); err != nil {
				return
			}
		}
	}))
	w := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
	src := strings.NewReader("")
	r := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/", nil)
	body := io.NopCloser(src)
	allocs := testing.AllocsPerRun(100, func() {
		src.Reset(`{"model":"claude-sonnet-4-5","max_tokens":1,"messages":[]}`)
		r.Body, r.ContentLength = body, 58
		h.ServeHTTP(w, r)
	})
	if allocs != 0 {
		t.Errorf("got %v allocations per request, want 0", allocs)
	}
	if r.Body != body {
		t.Error("the request's original body was not put back")
	}
}
