usage {
  hourly_retention = "30d"
  daily_retention  = "7d"
}

route "messages" {
  paths = ["/v1/messages"]
  pool  = "claude"
}

pool "claude" {}
