allowlist "office" {}

route "messages" {
  methods = ["POST"]
}

pricing "claude-opus-*" {
  input  = 15
  output = 75
}
