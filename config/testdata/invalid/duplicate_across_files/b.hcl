route "messages" {
  paths = ["/api/v1/messages"]
  pool  = "claude"
}

pool "claude" { strategy = "round_robin" }
