pool "claude" {}

route "messages" {
  paths = ["/v1/messages", "/api/v1/messages"]
  pool  = "claude"
}

route "legacy" {
  paths = ["/api/v1/messages", "/v1/complete", "/v1/complete"]
  pool  = "claude"
}
