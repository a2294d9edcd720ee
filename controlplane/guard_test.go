package controlplane

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

// proxiedHarness is a control plane behind a trusted proxy on loopback, so each request can
// name its client address in X-Forwarded-For.
func proxiedHarness(t *testing.T, tweak ...func(*Options)) *harness {
	t.Helper()
	dir := t.TempDir()
	writeHCL(t, dir, routeHCL("/v1/messages")) // no server block: loopback is trusted
	return newHarness(t, append([]func(*Options){func(o *Options) { o.Config = newTestConfig(t, o.Store, dir) }}, tweak...)...)
}

// loginAs attempts a login for client (via X-Forwarded-For) and returns the answer.
func (h *harness) loginAs(client, user, password string) response {
	h.t.Helper()
	return h.doHeader("POST", "/admin/login", "", map[string]string{"X-Forwarded-For": client},
		adminapi.LoginRequest{Username: user, Password: password})
}

func TestWrongGuessesFromOneAddressNeverBlockTheRightPasswordFromAnother(t *testing.T) {
	h := proxiedHarness(t)
	// An attacker guesses the admin's password from two addresses, under every spelling of
	// the name, until both addresses are locked out.
	for i, user := range []string{testUser, "ADMIN", "Admin", "aDmIn", testUser} {
		for _, client := range []string{"198.51.100.7", "198.51.100.9"} {
			if r := h.loginAs(client, user, "guess"+strconv.Itoa(i)); r.status != http.StatusUnauthorized {
				t.Fatalf("guess %d from %s: got %d (%s), want 401", i+1, client, r.status, r.body)
			}
		}
	}
	if r := h.loginAs("198.51.100.7", testUser, testPassword); r.status != http.StatusTooManyRequests {
		t.Errorf("the guessing address with the right password: got %d, want 429 (locked out)", r.status)
	}
	// The admin, elsewhere, is not locked out by them: the account is never locked.
	r := h.loginAs("203.0.113.5", testUser, testPassword)
	wantStatus(t, r, http.StatusOK)
	if got := r.header.Get("Retry-After"); got != "" {
		t.Errorf("got Retry-After %q on the admin's login, want none", got)
	}
}

func TestUsernameCaseVariantsAreOneUser(t *testing.T) {
	h := newHarness(t)
	r := h.do("POST", "/admin/login", "", adminapi.LoginRequest{Username: "ADMIN", Password: testPassword})
	login := wantDecoded[adminapi.LoginResponse](t, r, http.StatusOK)
	var who adminapi.WhoAmI
	h.do("GET", "/admin/whoami", login.Token, nil).decode(t, &who)
	if who.Username != testUser {
		t.Errorf("got whoami %q, want %q", who.Username, testUser)
	}
}

func TestFailedGuessesArePacedInTotalWithoutLockingTheAccount(t *testing.T) {
	const burst, interval = 3, 10 * time.Second
	h := proxiedHarness(t, func(o *Options) { o.guessBurst, o.guessInterval = burst, interval })
	// Failures from many addresses: the first burst cost nothing more than the 401.
	for i := range burst {
		r := h.loginAs("198.51.100."+strconv.Itoa(i+1), testUser, "wrong")
		wantStatus(t, r, http.StatusUnauthorized)
		if got := r.header.Get("Retry-After"); got != "" {
			t.Fatalf("failure %d within the burst: got Retry-After %q, want none", i+1, got)
		}
	}
	// Beyond the burst, a failing address must wait for its turn before guessing again.
	paced := "198.51.100.99"
	r := h.loginAs(paced, testUser, "wrong")
	wantStatus(t, r, http.StatusUnauthorized)
	if got := r.header.Get("Retry-After"); got != "10" {
		t.Errorf("failure beyond the burst: got Retry-After %q, want 10", got)
	}
	if msg := r.errorBody(t).Message; !strings.Contains(msg, "next attempt from this address is accepted in 10s") {
		t.Errorf("got message %q, want it to say when the address may try again", msg)
	}
	r = h.loginAs(paced, testUser, testPassword)
	wantStatus(t, r, http.StatusTooManyRequests)
	if e := r.errorBody(t); e.Type != adminapi.ErrRateLimit || !strings.Contains(e.Message, "slowed down") {
		t.Errorf("got %+v, want a rate_limit_error saying guesses are slowed down", e)
	}
	// The right password from an address that was not guessing goes through at once.
	wantStatus(t, h.loginAs("203.0.113.5", testUser, testPassword), http.StatusOK)

	h.clock.Advance(interval)
	wantStatus(t, h.loginAs(paced, testUser, testPassword), http.StatusOK)
}

func TestPasswordChangeGuessesAreBoundedLikeLogins(t *testing.T) {
	h, token := loggedIn(t)
	change := func(current string) response {
		return h.do("POST", "/admin/password", token, adminapi.ChangePasswordRequest{CurrentPassword: current, NewPassword: "a brand new password"})
	}
	for i := range defaultLoginLimit {
		r := change("wrong guess " + strconv.Itoa(i))
		wantFields(t, r, "current_password")
	}
	r := change(testPassword)
	wantStatus(t, r, http.StatusTooManyRequests)
	if got := r.header.Get("Retry-After"); got != strconv.Itoa(int(defaultLoginWindow/time.Second)) {
		t.Errorf("got Retry-After %q, want %d", got, int(defaultLoginWindow/time.Second))
	}
	// The login from that address is locked as well: one budget per address.
	wantStatus(t, h.do("POST", "/admin/login", "", adminapi.LoginRequest{Username: testUser, Password: testPassword}), http.StatusTooManyRequests)

	h.clock.Advance(defaultLoginWindow)
	wantStatus(t, change(testPassword), http.StatusOK)
}

func TestIPv6ClientsAreCountedPerSlash64(t *testing.T) {
	h := proxiedHarness(t)
	for i := range defaultLoginLimit {
		client := "2001:db8:0:1::" + strconv.Itoa(i+1)
		wantStatus(t, h.loginAs(client, testUser, "wrong"), http.StatusUnauthorized)
	}
	wantStatus(t, h.loginAs("2001:db8:0:1:ffff::9", testUser, testPassword), http.StatusTooManyRequests)
	wantStatus(t, h.loginAs("2001:db8:0:2::1", testUser, testPassword), http.StatusOK)
}

func TestOneAddressChecksOnePasswordAtATime(t *testing.T) {
	g := newLoginGuard(5, time.Minute, 20, time.Second)
	now := time.Unix(1_700_000_000, 0)
	if why, _ := g.begin(now, "192.0.2.1"); why != guardAllowed {
		t.Fatalf("first check: got %v, want allowed", why)
	}
	if why, _ := g.begin(now, "192.0.2.1"); why != guardConcurrent {
		t.Errorf("second check while the first runs: got %v, want guardConcurrent", why)
	}
	if why, _ := g.begin(now, "192.0.2.2"); why != guardAllowed {
		t.Errorf("another address meanwhile: got %v, want allowed", why)
	}
	g.abandoned("192.0.2.1")
	if why, _ := g.begin(now, "192.0.2.1"); why != guardAllowed {
		t.Errorf("after the first check was abandoned: got %v, want allowed", why)
	}
}

func TestGuardSuccessClearsEarlierFailures(t *testing.T) {
	g := newLoginGuard(3, time.Minute, 20, time.Second)
	now := time.Unix(1_700_000_000, 0)
	fail := func(at time.Time) {
		t.Helper()
		if why, wait := g.begin(at, "a"); why != guardAllowed {
			t.Fatalf("begin: got %v (wait %v), want allowed", why, wait)
		}
		g.failed(at, "a")
	}
	fail(now)
	fail(now)
	g.begin(now, "a")
	g.succeeded("a")
	for range 3 {
		fail(now)
	}
	if why, wait := g.begin(now.Add(10*time.Second), "a"); why != guardLocked || wait != 50*time.Second {
		t.Errorf("fourth attempt: got (%v, %v), want (guardLocked, 50s)", why, wait)
	}
}

func TestGuardForgetsIdleAddresses(t *testing.T) {
	g := newLoginGuard(5, time.Minute, 1<<20, time.Millisecond)
	now := time.Unix(1_700_000_000, 0)
	for i := range 2 * minSweep {
		addr := "ip:" + strconv.Itoa(i)
		g.begin(now, addr)
		g.failed(now, addr)
	}
	g.begin(now.Add(2*time.Minute), "ip:fresh")
	if got := len(g.addrs); got != 1 {
		t.Errorf("got %d tracked addresses after the window passed, want 1", got)
	}
}

func TestGuardKeyGroupsIPv6By64(t *testing.T) {
	tests := map[string]string{
		"192.0.2.1":            "192.0.2.1",
		"::ffff:192.0.2.1":     "192.0.2.1",
		"2001:db8::1":          "2001:db8::/64",
		"2001:db8::ffff:1":     "2001:db8::/64",
		"2001:db8:0:1::1":      "2001:db8:0:1::/64",
		"fe80::1%eth0":         "fe80::/64",
		"not an address":       "not an address",
		"127.0.0.1:40000":      "127.0.0.1:40000",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
	}
	for in, want := range tests {
		if got := guardKey(in); got != want {
			t.Errorf("guardKey(%q): got %q, want %q", in, got, want)
		}
	}
}
