pool "claude" {
  strategy    = "fastest"
  park_on_429 = "forever"
}
