# A relay secret read into a model list would reach every sidecar and the 403s of relay users.
policy "team" {
  models = [env("CRS_SECURITY__ENCRYPTION_KEY")]
}

pool "claude" {
  strategy = env("RELAY_TEST_STRATEGY_TYPO")
}
