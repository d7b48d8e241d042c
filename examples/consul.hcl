# Services found through Consul. Start a dev agent and two echo instances:
#   consul agent -dev &
#   go run ./examples/services/echo -listen 127.0.0.1:9001 -tags v1 &
#   go run ./examples/services/echo -listen 127.0.0.1:9002 -tags v1 &
#   gateway run examples/consul.hcl
#   curl -s localhost:8080/echo/hello

gateway {
  address          = env("GATEWAY_ADDR", "0.0.0.0:8080")
  shutdown_timeout = "30s"
}

admin {
  address = env("GATEWAY_ADMIN_ADDR", "127.0.0.1:9901")
}

consul {
  address   = env("CONSUL_HTTP_ADDR", "127.0.0.1:8500")
  token     = env("CONSUL_HTTP_TOKEN", "")
  wait_time = "5m"
  register {
    service          = "gateway"
    tags             = ["edge"]
    deregister_delay = "5s"
  }
}

service "echo" {
  consul {
    name = "echo"
    tags = ["v1"]
  }
  load_balancer = "round_robin"
  timeout       = "10s"
}

route "echo" {
  path         = "/echo/*"
  service      = "echo"
  strip_prefix = "/echo"
}
