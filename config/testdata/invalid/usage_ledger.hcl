usage {
  ledger                     = true
  ledger_retention           = "10m"
  ledger_max_records_per_day = -1
}

route "messages" {
  paths = ["/v1/messages"]
  pool  = "claude"
}

pool "claude" {}
