server {
  trusted_proxies = ["127.0.0.1/32", "localhost"]
}

allowlist "office" {
  cidrs = ["10.0.0.0/8", "10.0.0.300/8", "2001:db8::/129", "192.168.1.7"]
}

allowlist "empty" { cidrs = [] }
