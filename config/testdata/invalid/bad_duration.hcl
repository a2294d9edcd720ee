pool "claude" {
  park_on_429  = "fixed"
  park_429_for = "60"
  sticky_ttl   = "-1h"
}

route "messages" {
  paths   = ["/v1/messages"]
  pool    = "claude"
  timeout = "ten minutes"
}
