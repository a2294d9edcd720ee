server { trusted_proxies = [] }
