pool "claude" {
  strategy = "least_loaded"

route "messages" {
  paths = ["/v1/messages"
  pool  = "claude"
}
