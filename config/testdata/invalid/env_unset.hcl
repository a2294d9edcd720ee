server {
  max_body_bytes = env("RELAY_TEST_UNSET")
}

pool "claude" {
  strategy = env("RELAY_TEST_UNSET", "priority", "extra")
}
