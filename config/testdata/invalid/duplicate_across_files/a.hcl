pool "claude" {}

route "messages" {
  paths = ["/v1/messages"]
  pool  = "claude"
}
