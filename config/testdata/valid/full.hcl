# Every block and attribute, with env() and the conveniences the loader
# canonicalises: bare addresses, host bits, IPv4-mapped prefixes, lower-case
# methods.
server {
  trusted_proxies  = ["10.1.2.3/8", "::ffff:192.168.0.0/112", "fd00::1"]
  max_body_bytes   = env("RELAY_TEST_MAX_BODY")
  response_headers = ["x-envoy-upstream-service-time", "anthropic-priority-*"]
}

allowlist "office" {
  cidrs = ["10.0.0.0/8", "2001:db8::/32", "192.168.1.7", "2001:db8:ffff::1"]
}

policy "team" {
  requests_per_minute = 60
  tokens_per_day      = 5000000
  cost_per_day_usd    = 20.5
  concurrency         = 4
  models              = ["claude-sonnet-*", "claude-haiku-*"]
  denied_models       = ["claude-haiku-3*"]
  requests_per_day    = 5000
  tokens_per_minute   = 200000
  cost_per_week_usd   = 100
  cost_per_month_usd  = 300
  cost_total_usd      = 1000
  clients             = ["claude_code", "MyTool/*"]
  conversation_requests_per_minute = 30
  conversation_tokens_per_minute   = 100000
  conversation_cost_per_minute_usd = 0.5
  limit_mode          = "reserve"
  limit_modes         = { tokens_per_minute = "charge" }
  queue_timeout       = "30s"
  queue_max           = 50
  queue_keepalive     = "15s"
}

policy "unlimited" {}

pool "claude" {
  strategy     = env("RELAY_TEST_STRATEGY")
  failover     = { max_attempts = 2, on = [429, 529] }
  park_on_429  = "fixed"
  park_429_for = "90s"
  sticky_ttl   = "30m"
  park_529_for = "5s"
  park_5xx_after  = 5
  park_5xx_window = "30s"
  park_5xx_for    = "2m"
  stop_at_utilization = 0.9
  sticky_wait         = "3s"
}

pool "backup" {
  strategy = env("RELAY_TEST_UNSET", "priority")
  failover = { "on" = [503] }
}

route "messages" {
  paths     = ["/v1/messages", "/api/v1/messages", "/claude/v1/messages"]
  methods   = ["post"]
  pool      = "claude"
  allowlist = "office"
  policy    = "team"
  timeout   = "10m"
}

route "anything" {
  paths = ["/v1/*"]
  pool  = "backup"
}

pricing_defaults = false # only the rows below price models

pricing "claude-sonnet-4-5*" {
  input          = 3
  output         = 15
  cache_write_5m = 3.75
  cache_write_1h = 6
  cache_read     = 0.30
  long_context {
    above_input_tokens = 200000
    input              = 6
    output             = 22.5
    cache_write_5m     = 7.5
    cache_write_1h     = 12
    cache_read         = 0.6
  }
}

pricing "claude-*" {
  input          = 1
  output         = 2
  cache_write_5m = 0
  cache_write_1h = 0
  cache_read     = 0
}

pricing_fallback {
  input          = 15
  output         = 75
  cache_write_5m = 18.75
  cache_write_1h = 30
  cache_read     = 1.5
}

usage {
  hourly_retention = "14d"
  daily_retention  = "9600h"
  ledger           = true
  ledger_retention = "3d"
  ledger_max_records_per_day = 50000
}

alert "ops" {
  webhook      = "https://hooks.example.com/relay"
  secret       = env("RELAY_TEST_HOOK_SECRET")
  events       = ["account_parked", "oauth_refresh_failed", "budget_threshold", "config_refused"]
  min_severity = "warning"
  cooldown     = "10m"
}

alert "lark" {
  feishu = env("RELAY_TEST_FEISHU_URL")
  secret = env("RELAY_TEST_FEISHU_SIGN")
}

alert "oncall" {
  telegram = env("RELAY_TEST_TELEGRAM_TOKEN")
  chat_id  = "-1001234567890"
  api_url  = "http://10.0.0.9:8081"
}
