package controlplane

import "net/http"

// route is one admin API endpoint. The route table below is the single list that both
// registers the handlers and is checked against the OpenAPI document.
type route struct {
	method, path string
	// public routes need no session token.
	public bool
	// config routes exist only when the server distributes configuration.
	config bool
	// alerts routes exist only when the server runs alerts.
	alerts  bool
	handler func(s *Server) http.HandlerFunc
}

// adminRoutes is every admin API endpoint.
var adminRoutes = []route{
	{method: "POST", path: "/admin/login", public: true, handler: func(s *Server) http.HandlerFunc { return s.handleLogin }},
	{method: "POST", path: "/admin/logout", handler: func(s *Server) http.HandlerFunc { return s.handleLogout }},
	{method: "GET", path: "/admin/whoami", handler: func(s *Server) http.HandlerFunc { return s.handleWhoAmI }},
	{method: "POST", path: "/admin/password", handler: func(s *Server) http.HandlerFunc { return s.handleChangePassword }},
	{method: "GET", path: "/admin/audit", handler: func(s *Server) http.HandlerFunc { return s.handleListAudit }},
	{method: "GET", path: "/admin/openapi.json", public: true, handler: func(s *Server) http.HandlerFunc { return s.handleOpenAPI }},
	{method: "GET", path: "/admin/health", handler: func(s *Server) http.HandlerFunc { return s.handleHealth }},

	{method: "GET", path: "/admin/keys", handler: func(s *Server) http.HandlerFunc { return s.handleListKeys }},
	{method: "POST", path: "/admin/keys", handler: func(s *Server) http.HandlerFunc { return s.handleCreateKey }},
	{method: "POST", path: "/admin/keys/bulk", handler: func(s *Server) http.HandlerFunc { return s.handleBulkCreateKeys }},
	{method: "GET", path: "/admin/keys/{id}", handler: func(s *Server) http.HandlerFunc { return s.handleGetKey }},
	{method: "PATCH", path: "/admin/keys/{id}", handler: func(s *Server) http.HandlerFunc { return s.handleUpdateKey }},
	{method: "DELETE", path: "/admin/keys/{id}", handler: func(s *Server) http.HandlerFunc { return s.handleDeleteKey }},
	{method: "POST", path: "/admin/keys/{id}/restore", handler: func(s *Server) http.HandlerFunc { return s.handleRestoreKey }},
	{method: "POST", path: "/admin/keys/{id}/enable", handler: func(s *Server) http.HandlerFunc { return s.handleEnableKey }},
	{method: "POST", path: "/admin/keys/{id}/disable", handler: func(s *Server) http.HandlerFunc { return s.handleDisableKey }},
	{method: "POST", path: "/admin/keys/{id}/revoke", handler: func(s *Server) http.HandlerFunc { return s.handleRevokeKey }},
	{method: "POST", path: "/admin/keys/{id}/regenerate", handler: func(s *Server) http.HandlerFunc { return s.handleRegenerateKey }},
	{method: "GET", path: "/admin/keys/{id}/usage", handler: func(s *Server) http.HandlerFunc { return s.handleKeyUsage }},

	{method: "GET", path: "/admin/usage", handler: func(s *Server) http.HandlerFunc { return s.handleUsage }},
	{method: "GET", path: "/admin/requests", handler: func(s *Server) http.HandlerFunc { return s.handleRequests }},

	{method: "GET", path: "/admin/accounts", handler: func(s *Server) http.HandlerFunc { return s.handleListAccounts }},
	{method: "POST", path: "/admin/accounts", handler: func(s *Server) http.HandlerFunc { return s.handleAddAccount }},
	{method: "POST", path: "/admin/accounts/oauth/start", handler: func(s *Server) http.HandlerFunc { return s.handleOAuthStart }},
	{method: "POST", path: "/admin/accounts/oauth/finish", handler: func(s *Server) http.HandlerFunc { return s.handleOAuthFinish }},
	{method: "GET", path: "/admin/accounts/{id}", handler: func(s *Server) http.HandlerFunc { return s.handleGetAccount }},
	{method: "PATCH", path: "/admin/accounts/{id}", handler: func(s *Server) http.HandlerFunc { return s.handleUpdateAccount }},
	{method: "DELETE", path: "/admin/accounts/{id}", handler: func(s *Server) http.HandlerFunc { return s.handleDeleteAccount }},
	{method: "POST", path: "/admin/accounts/{id}/test", handler: func(s *Server) http.HandlerFunc { return s.handleTestAccount }},
	{method: "POST", path: "/admin/accounts/{id}/unpark", handler: func(s *Server) http.HandlerFunc { return s.handleUnparkAccount }},
	{method: "POST", path: "/admin/accounts/{id}/refresh", handler: func(s *Server) http.HandlerFunc { return s.handleRefreshAccount }},
	{method: "POST", path: "/admin/accounts/{id}/unbind", handler: func(s *Server) http.HandlerFunc { return s.handleUnbindAccount }},
	{method: "DELETE", path: "/admin/sessions/{session}", handler: func(s *Server) http.HandlerFunc { return s.handleClearSession }},

	{method: "GET", path: "/admin/config/status", config: true, handler: func(s *Server) http.HandlerFunc { return s.handleConfigStatus }},
	{method: "GET", path: "/admin/sidecars", config: true, handler: func(s *Server) http.HandlerFunc { return s.handleListSidecars }},

	{method: "GET", path: "/admin/alerts", alerts: true, handler: func(s *Server) http.HandlerFunc { return s.handleListAlerts }},
	{method: "POST", path: "/admin/alerts/{name}/test", alerts: true, handler: func(s *Server) http.HandlerFunc { return s.handleTestAlert }},
}

// register adds the routes this server serves to mux.
func (s *Server) register(mux *http.ServeMux) {
	for _, rt := range adminRoutes {
		if rt.config && s.config == nil || rt.alerts && s.alerts == nil {
			continue
		}
		h := rt.handler(s)
		if !rt.public {
			h = s.authed(h)
		}
		mux.HandleFunc(rt.method+" "+rt.path, h)
	}
}
