policy "no_slots" {
  queue_timeout = "30s"
}

policy "team" {
  concurrency   = 4
  queue_timeout = "soon"
  queue_max     = -1
}

policy "chatty" {
  concurrency     = 2
  queue_timeout   = "30s"
  queue_keepalive = "10ms"
}

policy "no_queue" {
  concurrency     = 2
  queue_keepalive = "15s"
}
