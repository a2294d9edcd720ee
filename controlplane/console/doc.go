// Package console is the web console: server-rendered pages under /ui/ that operators use
// instead of the CLI, built on the admin API and nothing else.
//
// # Shape
//
// Console.Handler serves /ui/. Each page handler reads the admin session token from the
// console's cookie, calls the admin API through an adminclient.Client whose transport hands
// the request to the admin API's own handler in-process (transport.go: the browser's remote
// address and X-Forwarded-For go with it, so the login throttle, lockout and audit log see
// the person), and renders an html/template page (templates/, embedded). A change is an HTML
// form posted to the console, checked for its origin and CSRF token (session.go), turned into
// the same admin API call the CLI makes, and answered with a redirect to the page that shows
// the result (post/redirect/get), or the page again with the API's message.
//
// # Security
//
// Every answer carries a Content-Security-Policy of 'self' only (no inline script or
// style; static/console.js is the only script), frame-ancestors 'none', X-Frame-Options,
// nosniff and Referrer-Policy same-origin (no-referrer would make browsers send
// Origin: null with the console's own forms). The session cookie is HttpOnly, SameSite=Strict,
// Secure when the browser came over HTTPS, scoped to /ui/ and expires with the token; a
// state-changing request must come from the console's own origin and carry the CSRF token
// derived from the session token. An admin API 401 (expired, logged out, password changed)
// ends the console session and shows the login page saying why.
//
// # Where to add a page
//
// A template under templates/ (it defines "content"), its name in pageNames, a handler
// method on Console that gathers the data through the admin client, and one line in
// routes. Usage comes from the usage report (GET /admin/usage, usage.go), drawn as inline SVG
// (chart.go and the "chart" template in layout.html).
package console
