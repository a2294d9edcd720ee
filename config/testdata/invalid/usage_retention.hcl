usage {
  hourly_retention = "90 days"
  daily_retention  = "12h"
}

route "messages" {
  paths = ["/v1/messages"]
  pool  = "claude"
}

pool "claude" {}
