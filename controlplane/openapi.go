package controlplane

import (
	_ "embed"
	"net/http"
)

// openAPIDocument is the hand-written OpenAPI 3 description of the admin API. A test checks
// that it lists exactly the routes of adminRoutes.
//
//go:embed openapi.json
var openAPIDocument []byte

func (s *Server) handleOpenAPI(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(openAPIDocument)
}
