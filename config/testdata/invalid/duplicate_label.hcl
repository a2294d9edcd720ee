server { max_body_bytes = 1048576 }
server { max_body_bytes = 2097152 }

pool "claude" {}
pool "claude" { strategy = "priority" }

route "messages" {
  paths = ["/v1/messages"]
  pool  = "claude"
}

pricing "claude-*" {
  input          = 3
  output         = 15
  cache_write_5m = 3.75
  cache_write_1h = 6
  cache_read     = 0.3
}

pricing "claude-*" {
  input          = 1
  output         = 5
  cache_write_5m = 1.25
  cache_write_1h = 2
  cache_read     = 0.1
}
