pool "main" {}

policy "team" { concurrency = 2 }
