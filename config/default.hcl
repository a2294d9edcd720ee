# The configuration claude-relay runs on when CLAUDE_RELAY_CONFIG_DIR is not
# set (dev mode, first start). Copy it into your config directory as a
# starting point: every block below is optional there.

server {
  # X-Forwarded-For is honoured only from these proxies (nginx on the host).
  trusted_proxies = ["127.0.0.1/32", "::1/128"]
  max_body_bytes  = 10485760 # 10 MiB, like nginx client_max_body_size 10M
}

pool "default" {
  strategy    = "sticky_least_loaded"
  failover    = { max_attempts = 3, on = [429, 529, 500, 502, 503, 504] }
  park_on_429 = "reset_header" # honour anthropic-ratelimit-unified-reset
  park_429_for = "60s"         # when the upstream sends no reset header
  sticky_ttl  = "1h"
  park_529_for    = "15s" # an overloaded (529) account rests briefly
  park_5xx_after  = 3     # this many 5xx answers within park_5xx_window...
  park_5xx_window = "60s"
  park_5xx_for    = "60s" # ...park the account for this long
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

# Anthropic's published prices in USD per million tokens. The first glob that
# matches a model wins, so more specific globs come first. Cache writes cost
# 1.25x (5 minutes) or 2x (1 hour) the input price, cache reads 0.1x.

pricing "claude-opus-4-5*" {
  input          = 5
  output         = 25
  cache_write_5m = 6.25
  cache_write_1h = 10
  cache_read     = 0.50
}

pricing "claude-opus-4-1*" {
  input          = 15
  output         = 75
  cache_write_5m = 18.75
  cache_write_1h = 30
  cache_read     = 1.50
}

pricing "claude-opus-4-0*" {
  input          = 15
  output         = 75
  cache_write_5m = 18.75
  cache_write_1h = 30
  cache_read     = 1.50
}

pricing "claude-opus-4-20250514*" {
  input          = 15
  output         = 75
  cache_write_5m = 18.75
  cache_write_1h = 30
  cache_read     = 1.50
}

pricing "claude-sonnet-4-5*" {
  input          = 3
  output         = 15
  cache_write_5m = 3.75
  cache_write_1h = 6
  cache_read     = 0.30
}

pricing "claude-sonnet-4-0*" {
  input          = 3
  output         = 15
  cache_write_5m = 3.75
  cache_write_1h = 6
  cache_read     = 0.30
}

pricing "claude-sonnet-4-20250514*" {
  input          = 3
  output         = 15
  cache_write_5m = 3.75
  cache_write_1h = 6
  cache_read     = 0.30
}

pricing "claude-3-7-sonnet*" {
  input          = 3
  output         = 15
  cache_write_5m = 3.75
  cache_write_1h = 6
  cache_read     = 0.30
}

pricing "claude-haiku-4-5*" {
  input          = 1
  output         = 5
  cache_write_5m = 1.25
  cache_write_1h = 2
  cache_read     = 0.10
}

pricing "claude-3-5-haiku*" {
  input          = 0.80
  output         = 4
  cache_write_5m = 1
  cache_write_1h = 1.6
  cache_read     = 0.08
}

pricing "claude-3-haiku*" {
  input          = 0.25
  output         = 1.25
  cache_write_5m = 0.30
  cache_write_1h = 0.50
  cache_read     = 0.03
}

# Models no glob matches are priced like the most expensive one, so that cost
# limits err on the safe side; usage records mark such prices as unknown.
pricing_fallback {
  input          = 15
  output         = 75
  cache_write_5m = 18.75
  cache_write_1h = 30
  cache_read     = 1.50
}
