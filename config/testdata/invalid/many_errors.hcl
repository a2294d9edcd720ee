# Several unrelated mistakes: every one is reported in a single run.
server {
  trusted_proxies = ["not-an-ip"]
  max_body_bytes  = 0
}

allowlist "office" { cidrs = ["10.0.0.0/8", "999.0.0.0/8"] }

policy "team" {
  concurrency = -1
  models      = []
}

pool "claude" {
  strategy = "random"
  failover = { max_attempts = 0 }
}

route "messages" {
  paths   = ["/v1/messages", "messages"]
  methods = ["POST", "GET /"]
  pool    = "claude"
  policy  = "missing"
  timeout = "soon"
  retries = 3
}

route "copy" {
  paths = ["/v1/messages"]
  pool  = "nowhere"
}

route "nothing" {
  paths   = ["/v1/nothing"]
  methods = []
  pool    = "claude"
}
