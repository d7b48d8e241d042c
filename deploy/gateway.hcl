# The gateway config of the deployment: docker-compose.yml mounts this file into every
# gateway replica, and `make stack` (internal/stack) runs three local replicas on it.
# Everything that differs between the two comes from the environment:
#
#   GATEWAY_ADDR              public listener            (default 0.0.0.0:8080)
#   GATEWAY_ADMIN_ADDR        admin listener             (default 0.0.0.0:9901)
#   GATEWAY_ADVERTISE_ADDR    address registered in Consul (the image's entrypoint sets
#                             the container's IP; empty = the listener's host)
#   GATEWAY_TRUSTED_PROXIES   CIDR of the front load balancer (compose: its network)
#   GATEWAY_DEREGISTER_DELAY  how long a stopping replica keeps serving after leaving
#                             Consul and failing /readyz (default 5s)
#   CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, REDIS_ADDR, REDIS_PASSWORD, JWT_SECRET
#   ORDERS_RATE_LIMIT, ORDERS_RATE_PERIOD   the per-user limit on /api/orders
#   REDIS_TIMEOUT             bound on each rate-limit decision (default 100ms; about
#                             2.5 x the round trip to Redis)
#
# Routes:
#   /api/users/*   -> Consul service "users"   public
#   /api/orders/*  -> Consul service "orders"  JWT required; rate limited per user (Redis)

gateway {
  address          = env("GATEWAY_ADDR", "0.0.0.0:8080")
  shutdown_timeout = "30s"
  # Only the front load balancer may set X-Forwarded-For.
  trusted_proxies = [env("GATEWAY_TRUSTED_PROXIES", "127.0.0.1/32")]
}

admin {
  # 0.0.0.0 in a container: the load balancer and Consul check /readyz from outside.
  address = env("GATEWAY_ADMIN_ADDR", "0.0.0.0:9901")
}

log {
  level  = env("GATEWAY_LOG_LEVEL", "info")
  format = env("GATEWAY_LOG_FORMAT", "json")
}

consul {
  address = env("CONSUL_HTTP_ADDR", "127.0.0.1:8500")
  token   = env("CONSUL_HTTP_TOKEN", "")
  register {
    service          = "gateway"
    address          = env("GATEWAY_ADVERTISE_ADDR", "")
    tags             = ["edge"]
    deregister_delay = env("GATEWAY_DEREGISTER_DELAY", "5s")
  }
}

redis {
  address  = env("REDIS_ADDR", "127.0.0.1:6379")
  password = env("REDIS_PASSWORD", "")
  # A limiter decision that Redis has not answered by then is a store error, and
  # on_store_error = "allow" lets the request through: raise it on a slow host.
  timeout  = env("REDIS_TIMEOUT", "100ms")
}

jwt "users" {
  algorithms     = ["HS256"]
  secret         = env("JWT_SECRET")
  issuer         = "infinity-x-one"
  audience       = ["api"]
  leeway         = "30s"
  forward_claims = { sub = "X-User-Id" }
}

# One bucket per user (the token's subject), shared by every replica through Redis.
# If Redis is down, requests are let through (fail open) rather than refused.
rate_limit "per_user" {
  algorithm      = "token_bucket"
  requests       = env("ORDERS_RATE_LIMIT", "60")
  period         = env("ORDERS_RATE_PERIOD", "1m")
  key            = "claim:sub"
  store          = "redis"
  on_store_error = "allow"
}

service "users" {
  consul {
    name = "users"
    tags = ["v1"]
  }
  load_balancer = "round_robin"
  timeout       = "10s"
  retry {
    attempts    = 3
    backoff     = "25ms"
    max_backoff = "250ms"
  }
  circuit_breaker {
    failure_threshold = 5
    open_timeout      = "10s"
  }
}

service "orders" {
  consul {
    name = "orders"
    tags = ["v1"]
  }
  load_balancer = "least_conn"
  timeout       = "10s"
  retry {
    attempts    = 3
    backoff     = "25ms"
    max_backoff = "250ms"
  }
  circuit_breaker {
    failure_threshold = 5
    open_timeout      = "10s"
  }
}

route "users" {
  path         = "/api/users/*"
  service      = "users"
  strip_prefix = "/api"
}

route "orders" {
  path         = "/api/orders/*"
  service      = "orders"
  strip_prefix = "/api"
  jwt          = "users"
  rate_limit   = "per_user"
}
