# Configuration for docker/compose.yaml, mounted read-only at
# /opt/claude-relay/config. It is config/default.hcl with one change:
# trusted_proxies also covers Docker's private networks, because nginx on the
# host reaches a published container port from the bridge gateway
# (172.17.0.1, 172.18.0.1, …), not from 127.0.0.1. Narrow it to your network's
# gateway (docker network inspect claude-relay_default) if other containers
# on the host should not be able to set X-Forwarded-For.
#
# Check an edit before "docker compose kill -s HUP control sidecar":
#   docker compose run --rm --no-deps sidecar config check /opt/claude-relay/config
# Prices are not repeated here: without pricing blocks the built-in ones apply.

server {
  trusted_proxies = ["127.0.0.1/32", "::1/128", "172.16.0.0/12", "192.168.0.0/16", "10.0.0.0/8"]
  max_body_bytes  = 10485760 # 10 MiB, like nginx client_max_body_size 10M
}

pool "default" {
  strategy     = "sticky_least_loaded"
  failover     = { max_attempts = 3, on = [429, 529, 500, 502, 503, 504] }
  park_on_429  = "reset_header" # honour anthropic-ratelimit-unified-reset
  park_429_for = "60s"          # when the upstream sends no reset header
  sticky_ttl   = "1h"
}

route "messages" {
  paths   = ["/v1/messages", "/api/v1/messages", "/claude/v1/messages"]
  methods = ["POST"]
  pool    = "default"
}

route "count_tokens" {
  paths   = ["/v1/messages/count_tokens", "/api/v1/messages/count_tokens", "/claude/v1/messages/count_tokens"]
  methods = ["POST"]
  pool    = "default"
}

route "models" {
  paths = [
    "/v1/models", "/v1/models/*",
    "/api/v1/models", "/api/v1/models/*",
    "/claude/v1/models", "/claude/v1/models/*",
  ]
  methods = ["GET"]
  pool    = "default"
}
