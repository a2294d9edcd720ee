policy "team" {
  requests_per_minute = -1
  tokens_per_day      = -5000000
  cost_per_day_usd    = -0.5
  concurrency         = -4
  conversation_cost_per_minute_usd = -1
}

pricing_fallback {
  input          = -15
  output         = 75
  cache_write_5m = 18.75
  cache_write_1h = 30
  cache_read     = 1.5
}

pool "claude" {
  stop_at_utilization = 1.5
}
