pool "claude" {}

route "messages" {
  paths = ["/v1/messages", "v1/messages", "/v1/*/count_tokens", "/v1/messages?beta=true"]
  pool  = "claude"
}
