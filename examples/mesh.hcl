# The gateway in Consul's service mesh (see docs/mesh.md). Start a dev agent (Connect
# is on in -dev), a plain echo on loopback behind Consul's built-in sidecar, and a
# Connect-native echo:
#   consul agent -dev &
#   go run ./examples/services/echo -service users -id users-1 -listen 127.0.0.1:9001 -advertise 127.0.0.1 -sidecar-port 21000 &
#   consul connect proxy -sidecar-for users-1 &
#   go run ./examples/services/echo -service orders -listen 127.0.0.1:9002 -connect &
#   gateway run -config examples/mesh.hcl
#   curl -s localhost:8080/users/1          # through the sidecar
#   curl -s localhost:8080/orders/1         # "peer": "spiffe://…/svc/gateway"

gateway {
  address = env("GATEWAY_ADDR", "0.0.0.0:8080")
}

admin {
  address = env("GATEWAY_ADMIN_ADDR", "127.0.0.1:9901")
}

consul {
  address = env("CONSUL_HTTP_ADDR", "127.0.0.1:8500")
  token   = env("CONSUL_HTTP_TOKEN", "")
}

# The gateway's identity in the mesh: intentions name it as their source.
connect {
  service_name = "gateway"
}

service "users" {
  consul {
    name    = "users"
    connect = true # instances from /v1/health/connect/users: its sidecars
  }
  timeout = "10s"
}

service "orders" {
  consul {
    name    = "orders"
    connect = true # a Connect-native service: listed by /v1/health/connect/orders itself
  }
  timeout = "10s"
}

route "users" {
  path    = "/users/*"
  service = "users"
}

route "orders" {
  path    = "/orders/*"
  service = "orders"
}
