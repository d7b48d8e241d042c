# The embedded default that `gateway dev` serves: demo backends started by the process
# itself (their addresses arrive through env(); the defaults below are used when you run
# this file yourself), a memory-backed everything, no Consul, no Redis. Copy it as a
# starting point for your own config:
#   gateway validate cmd/gateway/dev.hcl
#   gateway run cmd/gateway/dev.hcl    # with your own services on 127.0.0.1:9001-9003

gateway {
  address          = env("GATEWAY_ADDR", "127.0.0.1:8080")
  shutdown_timeout = "5s"
}

admin {
  address = env("GATEWAY_ADMIN_ADDR", "127.0.0.1:9901")
}

log {
  level  = "info"
  format = "dev"
}

service "demo" {
  load_balancer = "round_robin"
  timeout       = "5s"
  instance { address = env("DEV_DEMO_1", "127.0.0.1:9001") }
  instance { address = env("DEV_DEMO_2", "127.0.0.1:9002") }
}

service "users" {
  load_balancer = "least_conn"
  timeout       = "5s"
  instance { address = env("DEV_USERS_1", "127.0.0.1:9003") }
}

# A per-client limit kept in memory (production replicas share theirs in Redis).
rate_limit "dev" {
  requests = 60
  period   = "1m"
  key      = "client_ip"
  store    = "memory"
}

# A static path, rate limited: every answer carries RateLimit-* headers.
route "hello" {
  methods    = ["GET"]
  path       = "/hello"
  service    = "demo"
  rate_limit = "dev"
}

# A :param segment; /api is stripped before the request goes upstream.
route "user" {
  methods      = ["GET", "PUT", "DELETE"]
  path         = "/api/users/:id"
  service      = "users"
  strip_prefix = "/api"
  cors {
    allowed_origins = ["http://localhost:3000"]
    allowed_methods = ["GET", "PUT", "DELETE"]
  }
}

# Tokens for the protected route: `gateway dev` prints one; `gateway token -sub you
# -roles reader -secret "$JWT_SECRET"` mints more. Never use this secret outside dev.
jwt "dev" {
  algorithms     = ["HS256"]
  secret         = env("JWT_SECRET", "dev-only-secret-0123456789abcdef0123")
  issuer         = "gateway-dev"
  forward_claims = { sub = "X-User-Id" }
}

# Needs a token with the "reader" role; the subject goes upstream as X-User-Id.
route "me" {
  methods = ["GET"]
  path    = "/api/me"
  service = "users"
  jwt     = "dev"
  roles   = ["reader"]
}

# A trailing wildcard.
route "static" {
  path    = "/static/*"
  service = "demo"
}
