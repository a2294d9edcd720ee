policy "team" {
  cost_per_day_usd = 5
  limit_mode       = "hard"
  limit_modes      = { requests_per_minute = "reserve", cost_per_day_usd = "exact" }
}
