server {
  response_headers = ["x-request-id", "Set-Cookie", "anthropic-organization-id", "x bad", "x-*-y", "anthropic-*"]
}

pool "claude" {}

route "messages" {
  paths = ["/v1/messages"]
  pool  = "claude"
}
