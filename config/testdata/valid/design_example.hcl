# The illustrative configuration from DESIGN.md, verbatim.
allowlist "office" { cidrs = ["10.0.0.0/8", "2001:db8::/32"] }

policy "team" {                        # keys reference a policy; per-key overrides allowed
  requests_per_minute = 60
  tokens_per_day      = 5000000
  cost_per_day_usd    = 20
  concurrency         = 4
  models              = ["claude-sonnet-*", "claude-haiku-*"]
}

pool "claude" {
  strategy       = "sticky_least_loaded"
  failover       = { max_attempts = 3, on = [429, 529, 500, 502, 503] }
  park_on_429    = "reset_header"       # honour anthropic-ratelimit-unified-reset
}

route "messages" {
  paths     = ["/v1/messages", "/api/v1/messages", "/claude/v1/messages"]
  pool      = "claude"
  allowlist = "office"
  timeout   = "10m"
}
