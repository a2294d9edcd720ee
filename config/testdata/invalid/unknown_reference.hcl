pool "claude" {}
allowlist "office" { cidrs = ["10.0.0.0/8"] }
policy "team" { concurrency = 4 }

route "messages" {
  paths     = ["/v1/messages"]
  pool      = "claud"
  allowlist = "ofice"
  policy    = "teams"
}
