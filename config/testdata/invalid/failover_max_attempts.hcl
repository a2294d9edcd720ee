pool "claude" {
  failover = { max_attempts = 0, on = [429, 200] }
}

pool "other" {
  failover = { max_attempts = "three", retry = true }
}
