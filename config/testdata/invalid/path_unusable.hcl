pool "claude" {}

route "messages" {
  paths = ["/v1/messages", "/v1/../files", "/v1/models%2f/*", "/v1/models/./*"]
  pool  = "claude"
}
