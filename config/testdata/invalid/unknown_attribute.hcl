pool "claude" {}

route "messages" {
  paths    = ["/v1/messages"]
  pool     = "claude"
  upstream = "https://api.anthropic.com"
}

upstream "anthropic" {
  url = "https://api.anthropic.com"
}

listen = ":3000"
