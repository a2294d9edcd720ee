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

# Anthropic's published prices in USD per million tokens, as of December 2026.
# Operator pricing blocks are matched before these rows (see README, Prices);
# among these, the first glob that matches a model wins, so more specific globs
# come first. Cache writes cost 1.25x (5 minutes) or 2x (1 hour) the input
# price; cache reads 0.1x unless a row says otherwise. A long_context block
# prices every token of a request whose prompt (input + cache writes + cache
# reads) is longer than above_input_tokens.

# Claude Fable 5.1. Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing, stored copy of 2026-12).
pricing "claude-fable-5-1*" {
  input          = 10
  output         = 50
  cache_write_5m = 12.50
  cache_write_1h = 20
  cache_read     = 0.25
}

# Claude Mythos 5.1 (limited availability). Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing).
pricing "claude-mythos-5-1*" {
  input          = 10
  output         = 50
  cache_write_5m = 12.50
  cache_write_1h = 20
  cache_read     = 0.25
}

# Claude Fable 5. Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing).
pricing "claude-fable-5*" {
  input          = 10
  output         = 50
  cache_write_5m = 12.50
  cache_write_1h = 20
  cache_read     = 1
}

# Claude Mythos 5 (limited availability). Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing).
pricing "claude-mythos-5*" {
  input          = 10
  output         = 50
  cache_write_5m = 12.50
  cache_write_1h = 20
  cache_read     = 1
}

# Claude Opus 5.5. Source: platform.claude.com/docs/en/models/opus-5-5/overview (Pricing).
pricing "claude-opus-5-5*" {
  input          = 4
  output         = 20
  cache_write_5m = 5
  cache_write_1h = 8
  cache_read     = 0.20
}

# Claude Opus 5. Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing).
pricing "claude-opus-5*" {
  input          = 5
  output         = 25
  cache_write_5m = 6.25
  cache_write_1h = 10
  cache_read     = 0.50
}

# Claude Opus 4.8, Claude Code's default model. Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing).
pricing "claude-opus-4-8*" {
  input          = 5
  output         = 25
  cache_write_5m = 6.25
  cache_write_1h = 10
  cache_read     = 0.50
}

# Claude Opus 4.7. Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing).
pricing "claude-opus-4-7*" {
  input          = 5
  output         = 25
  cache_write_5m = 6.25
  cache_write_1h = 10
  cache_read     = 0.50
}

# Claude Opus 4.6. Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing).
pricing "claude-opus-4-6*" {
  input          = 5
  output         = 25
  cache_write_5m = 6.25
  cache_write_1h = 10
  cache_read     = 0.50
}

# Claude Opus 4.5. Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing).
pricing "claude-opus-4-5*" {
  input          = 5
  output         = 25
  cache_write_5m = 6.25
  cache_write_1h = 10
  cache_read     = 0.50
}

# Claude Opus 4.1. Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing).
pricing "claude-opus-4-1*" {
  input          = 15
  output         = 75
  cache_write_5m = 18.75
  cache_write_1h = 30
  cache_read     = 1.50
}

# Claude Opus 4. Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing).
pricing "claude-opus-4-0*" {
  input          = 15
  output         = 75
  cache_write_5m = 18.75
  cache_write_1h = 30
  cache_read     = 1.50
}

# Claude Opus 4 (dated id). Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing).
pricing "claude-opus-4-20250514*" {
  input          = 15
  output         = 75
  cache_write_5m = 18.75
  cache_write_1h = 30
  cache_read     = 1.50
}

# Claude Sonnet 5.5: cache hits cut from $0.20 to $0.10 on 2026-10-07. Source: platform.claude.com/docs/en/models/sonnet-5-5/overview (Pricing); the cache-read cut as re-checked against the pricing page by github.com/kurofune/claudit v1.9.2 and github.com/TheKrush/PromptFuel v1.0.23.
pricing "claude-sonnet-5-5*" {
  input          = 2
  output         = 10
  cache_write_5m = 2.50
  cache_write_1h = 4
  cache_read     = 0.10
}

# Claude Sonnet 5. Source: platform.claude.com/docs/en/models/sonnet-5/overview (Pricing).
pricing "claude-sonnet-5*" {
  input          = 2
  output         = 10
  cache_write_5m = 2.50
  cache_write_1h = 4
  cache_read     = 0.20
}

# Claude Sonnet 4.6: the 1M context at standard rates. Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing).
pricing "claude-sonnet-4-6*" {
  input          = 3
  output         = 15
  cache_write_5m = 3.75
  cache_write_1h = 6
  cache_read     = 0.30
}

# Claude Sonnet 4.5, 1M context beta: prompts over 200k tokens at the long-context rates. Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing; Long context pricing).
pricing "claude-sonnet-4-5*" {
  input          = 3
  output         = 15
  cache_write_5m = 3.75
  cache_write_1h = 6
  cache_read     = 0.30
  long_context {
    above_input_tokens = 200000
    input              = 6
    output             = 22.50
    cache_write_5m     = 7.50
    cache_write_1h     = 12
    cache_read         = 0.60
  }
}

# Claude Sonnet 4, likewise. Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing; Long context pricing).
pricing "claude-sonnet-4-0*" {
  input          = 3
  output         = 15
  cache_write_5m = 3.75
  cache_write_1h = 6
  cache_read     = 0.30
  long_context {
    above_input_tokens = 200000
    input              = 6
    output             = 22.50
    cache_write_5m     = 7.50
    cache_write_1h     = 12
    cache_read         = 0.60
  }
}

# Claude Sonnet 4 (dated id), likewise. Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing; Long context pricing).
pricing "claude-sonnet-4-20250514*" {
  input          = 3
  output         = 15
  cache_write_5m = 3.75
  cache_write_1h = 6
  cache_read     = 0.30
  long_context {
    above_input_tokens = 200000
    input              = 6
    output             = 22.50
    cache_write_5m     = 7.50
    cache_write_1h     = 12
    cache_read         = 0.60
  }
}

# Claude Sonnet 3.7 (deprecated). Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing).
pricing "claude-3-7-sonnet*" {
  input          = 3
  output         = 15
  cache_write_5m = 3.75
  cache_write_1h = 6
  cache_read     = 0.30
}

# Claude Haiku 5.5: prompts over 100k tokens at five times the rates. Source: platform.claude.com/docs/en/models/haiku-5-5/overview (Pricing: "for prompts up to / over 100,000 tokens").
pricing "claude-haiku-5-5*" {
  input          = 0.10
  output         = 0.50
  cache_write_5m = 0.125
  cache_write_1h = 0.20
  cache_read     = 0.01
  long_context {
    above_input_tokens = 100000
    input              = 0.50
    output             = 2.50
    cache_write_5m     = 0.625
    cache_write_1h     = 1
    cache_read         = 0.05
  }
}

# Claude Haiku 4.5. Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing).
pricing "claude-haiku-4-5*" {
  input          = 1
  output         = 5
  cache_write_5m = 1.25
  cache_write_1h = 2
  cache_read     = 0.10
}

# Claude Haiku 3.5. Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing).
pricing "claude-3-5-haiku*" {
  input          = 0.80
  output         = 4
  cache_write_5m = 1
  cache_write_1h = 1.60
  cache_read     = 0.08
}

# Claude Opus 3 (deprecated). Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing).
pricing "claude-3-opus*" {
  input          = 15
  output         = 75
  cache_write_5m = 18.75
  cache_write_1h = 30
  cache_read     = 1.50
}

# Claude Haiku 3. Source: platform.claude.com/docs/en/about-claude/pricing (Model pricing).
pricing "claude-3-haiku*" {
  input          = 0.25
  output         = 1.25
  cache_write_5m = 0.30
  cache_write_1h = 0.50
  cache_read     = 0.03
}

# Models no glob matches are priced like the most expensive one, so that cost
# limits err on the safe side. Such a request is counted in its key's
# unpriced_requests (admin keys usage) and in claude_relay_unpriced_requests_total{model},
# and a WARN line names the model.
pricing_fallback {
  input          = 15
  output         = 75
  cache_write_5m = 18.75
  cache_write_1h = 30
  cache_read     = 1.50
}
