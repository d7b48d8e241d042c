# A gateway in front of services with fixed addresses: no Consul, no Redis.
#   gateway validate examples/static.hcl
#   gateway run examples/static.hcl

gateway {
  address          = env("GATEWAY_ADDR", "0.0.0.0:8080")
  shutdown_timeout = "30s"
  max_body_bytes   = 10485760
  trusted_proxies  = ["127.0.0.1/32"]
}

admin {
  address = env("GATEWAY_ADMIN_ADDR", "127.0.0.1:9901")
}

log {
  level  = "info"
  format = "json"
}

service "users" {
  load_balancer = "least_conn"
  timeout       = "10s"
  instance { address = env("USERS_1", "127.0.0.1:9001") }
  instance { address = env("USERS_2", "127.0.0.1:9002") }
}

service "static" {
  load_balancer = "ip_hash"
  instance { address = env("STATIC_1", "127.0.0.1:9101") }
}

route "get-user" {
  methods      = ["GET", "PUT"]
  path         = "/api/users/:id"
  service      = "users"
  strip_prefix = "/api"
  cors {
    allowed_origins = ["https://app.example.com"]
    allowed_methods = ["GET", "PUT"]
  }
}

route "assets" {
  path    = "/assets/*"
  service = "static"
  fallback {
    status       = 503
    content_type = "text/plain"
    body         = "assets are being deployed, try again in a minute\n"
  }
}
