policy "no_slots" {
  queue_timeout = "30s"
}

policy "team" {
  concurrency   = 4
  queue_timeout = "soon"
  queue_max     = -1
}
