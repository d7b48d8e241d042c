package config

import (
	"crypto/tls"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// tail makes a snippet a complete config: one service and one route that are valid.
const tail = `
service "base" {
  instance {
    address = "127.0.0.1:9000"
  }
}
route "base" {
  path    = "/base"
  service = "base"
}
`

func envOf(vars map[string]string) LookupEnv {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func diagStrings(ds Diagnostics) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.String()
	}
	return out
}

// mustParse parses one file named t.hcl and fails the test on any diagnostic.
func mustParse(t *testing.T, src string, vars map[string]string) *Config {
	t.Helper()
	cfg, ds := ParseWithEnv(map[string][]byte{"t.hcl": []byte(src)}, envOf(vars))
	if len(ds) > 0 {
		t.Fatalf("unexpected diagnostics:\n%v", ds)
	}
	if cfg == nil {
		t.Fatal("nil config without diagnostics")
	}
	return cfg
}

// equal compares two values, printing both as JSON (pointers followed) when they differ.
func equal(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("%s differs\n got: %s\nwant: %s", what, g, w)
	}
}

func TestBadConfigs(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef" // 32 bytes
	vars := map[string]string{"SECRET": secret, "SHORT": "short"}
	cases := []struct {
		name string
		src  string // tail is appended
		want []string
	}{
		// What the limiter and the JWT verifier would refuse at start is refused here too.
		{"sliding window period in microseconds", "rate_limit \"a\" {\n  algorithm = \"sliding_window\"\n  requests = 10\n  period = \"1500us\"\n  store = \"memory\"\n}\n", []string{
			`t.hcl:4:3: rate_limit "a": a sliding_window period must be a whole number of milliseconds, not 1.5ms`}},
		{"max_keys zero", "rate_limit \"m\" {\n  requests = 10\n  period = \"1s\"\n  store = \"memory\"\n  max_keys = 0\n}\n", []string{
			`t.hcl:5:3: rate_limit "m": max_keys must be at least 1, not 0`}},
		{"client_ipv6_prefix too long", "rate_limit \"v\" {\n  requests = 10\n  period = \"1s\"\n  store = \"memory\"\n  client_ipv6_prefix = 129\n}\n", []string{
			`t.hcl:5:3: rate_limit "v": client_ipv6_prefix must be 1-128 (a prefix length), not 129`}},
		{"requests too large", "rate_limit \"b\" {\n  requests = 2000000000\n  period = \"1h\"\n  store = \"memory\"\n}\n", []string{
			`t.hcl:2:3: rate_limit "b": requests must be at most 1073741824`}},
		{"more than a request per microsecond", "rate_limit \"c\" {\n  requests = 1000000\n  period = \"10ms\"\n  store = \"memory\"\n}\n", []string{
			`t.hcl:3:3: rate_limit "c": a token_bucket needs at least 1µs per request: 1000000 requests in 10ms is too many`}},
		{"secret and jwks_url", "jwt \"j\" {\n  algorithms = [\"HS256\", \"RS256\"]\n  secret = env(\"SECRET\")\n  jwks_url = \"http://x/jwks\"\n}\n", []string{
			`t.hcl:4:3: jwt "j": a provider is either symmetric (secret) or asymmetric (jwks_url), not both: declare two jwt blocks`}},
		// Syntax and structure.
		{"syntax error", "gateway {\n  address = \n}\n", []string{
			"t.hcl:2:13: invalid expression: Expected the start of an expression, but found an invalid expression token"}},
		{"unknown top-level block", "servce \"x\" {\n}\n", []string{
			`t.hcl:1:1: unknown block "servce"; did you mean "service"?`}},
		{"unknown top-level attribute", "listen = 1\n", []string{
			`t.hcl:1:1: unknown attribute "listen"`}},
		{"unknown attribute", "gateway {\n  adress = \"x\"\n}\n", []string{
			`t.hcl:2:3: gateway: unknown attribute "adress"; did you mean "address"?`}},
		{"unknown nested block", "service \"s\" {\n  instance {\n    address = \"127.0.0.1:1\"\n  }\n  retri {\n  }\n}\n", []string{
			`t.hcl:5:3: service "s": unknown block "retri"; did you mean "retry"?`}},
		{"unknown attribute in nested block", "route \"r\" {\n  path = \"/r\"\n  service = \"base\"\n  cors {\n    allowed_origins = [\"*\"]\n    max_agee = \"1h\"\n  }\n}\n", []string{
			`t.hcl:6:5: route "r" cors: unknown attribute "max_agee"; did you mean "max_age"?`}},
		{"block written as attribute", "gateway {\n  tls = {}\n}\n", []string{
			`t.hcl:2:3: gateway: unknown attribute "tls"; tls is a block: write tls { … }`}},
		{"attribute written as block", "admin {\n  address {\n  }\n}\n", []string{
			`t.hcl:2:3: admin: unknown block "address"; address is an attribute: write address = …`}},
		{"single block with a name", "gateway \"main\" {\n}\n", []string{
			`t.hcl:1:9: gateway block takes no name`}},
		{"named block without a name", "service {\n}\n", []string{
			`t.hcl:1:1: service block needs a name, as in service "NAME" { … }`}},
		{"named block with two names", "jwt \"a\" \"b\" {\n  algorithms = [\"HS256\"]\n  secret = env(\"SECRET\")\n}\n", []string{
			`t.hcl:1:9: jwt block takes one name, not 2`}},
		{"bad name", "rate_limit \"per client\" {\n  requests = 1\n  period = \"1s\"\n  store = \"memory\"\n}\n", []string{
			`t.hcl:1:12: rate_limit name "per client": use letters, digits, '_', '-' and '.' only`}},
		{"repeated nested block", "service \"s\" {\n  instance {\n    address = \"127.0.0.1:1\"\n  }\n  transport {\n  }\n  transport {\n  }\n}\n", []string{
			`t.hcl:7:3: service "s": duplicate transport block; the first is at t.hcl:5:3`}},
		{"single block twice", "log {\n}\nlog {\n}\n", []string{
			`t.hcl:3:1: duplicate log block; the first is at t.hcl:1:1`}},
		{"nested block with a name", "gateway {\n  tls \"x\" {\n    cert_file = \"c\"\n    key_file = \"k\"\n  }\n}\n", []string{
			`t.hcl:2:7: tls block takes no name`}},

		// Types and numbers.
		{"attribute set twice", "gateway {\n  address = \"127.0.0.1:1\"\n  address = \"127.0.0.1:2\"\n}\n", []string{
			`t.hcl:3:3: attribute redefined: The argument "address" was already set at t.hcl:2:3. Each argument may be set only once`}},
		{"number too large", "gateway {\n  max_header_bytes = 1e30\n}\n", []string{
			`t.hcl:2:3: gateway: max_header_bytes is too large`}},
		{"string for number", "gateway {\n  max_header_bytes = \"lots\"\n}\n", []string{
			`t.hcl:2:3: gateway: max_header_bytes must be a whole number, not a string`}},
		{"fraction for whole number", "gateway {\n  max_body_bytes = 1.5\n}\n", []string{
			`t.hcl:2:3: gateway: max_body_bytes must be a whole number, not 1.5`}},
		{"string for bool", "log {\n  access_log = \"yes\"\n}\n", []string{
			`t.hcl:2:3: log: access_log must be true or false, not a string`}},
		{"string for list", "consul {\n  register {\n    tags = \"edge\"\n  }\n}\n", []string{
			`t.hcl:3:5: consul register: tags must be a list of strings, not a string`}},
		{"list for string", "admin {\n  address = [\"127.0.0.1:1\"]\n}\n", []string{
			`t.hcl:2:3: admin: address must be a string, not a list`}},
		{"list for map", "route \"r\" {\n  path = \"/r\"\n  service = \"base\"\n  metadata = [\"a\"]\n}\n", []string{
			`t.hcl:4:3: route "r": metadata must be a map of strings, not a list`}},
		{"fraction in list", "service \"s\" {\n  instance {\n    address = \"127.0.0.1:1\"\n  }\n  circuit_breaker {\n    failure_statuses = [502,\n      503.5]\n  }\n}\n", []string{
			`t.hcl:7:7: service "s" circuit_breaker: failure_statuses must be a whole number, not 503.5`}},
		{"variable reference", "admin {\n  address = addr\n}\n", []string{
			`t.hcl:2:13: admin: address: a string is written in quotes: "addr", not addr`}},

		// Durations.
		{"bad duration", "gateway {\n  shutdown_timeout = \"10\"\n}\n", []string{
			`t.hcl:2:3: gateway: shutdown_timeout: invalid duration "10" (want a Go duration such as "300ms", "10s" or "1m30s")`}},
		{"negative duration", "gateway {\n  idle_timeout = \"-1s\"\n}\n", []string{
			`t.hcl:2:3: gateway: idle_timeout must not be negative, got "-1s"`}},
		{"zero duration", "gateway {\n  read_header_timeout = \"0s\"\n}\n", []string{
			`t.hcl:2:3: gateway: read_header_timeout must be positive`}},
		{"consul wait over ten minutes", "consul {\n  wait_time = \"11m\"\n}\n", []string{
			`t.hcl:2:3: consul: wait_time must be at most 10m (Consul's limit for a blocking query)`}},

		// Enumerations.
		{"log level and format", "log {\n  level = \"loud\"\n  format = \"xml\"\n}\n", []string{
			`t.hcl:2:3: log: level "loud" is not one of trace, debug, info, warn, error`,
			`t.hcl:3:3: log: format "xml" is not one of json, combined, common, dev`}},
		{"tls min_version", "gateway {\n  tls {\n    cert_file = \"c\"\n    key_file = \"k\"\n    min_version = \"1.1\"\n  }\n}\n", []string{
			`t.hcl:5:5: gateway tls: min_version "1.1": want "1.2" or "1.3"`}},
		{"rate limit enums", "rate_limit \"x\" {\n  algorithm = \"leaky\"\n  requests = 1\n  period = \"1s\"\n  key = \"ip\"\n  store = \"etcd\"\n  on_store_error = \"panic\"\n}\n", []string{
			`t.hcl:2:3: rate_limit "x": algorithm "leaky" is not one of token_bucket, sliding_window`,
			`t.hcl:5:3: rate_limit "x": key "ip" is not client_ip, route, header:NAME or claim:NAME`,
			`t.hcl:6:3: rate_limit "x": store "etcd" is not one of redis, memory`,
			`t.hcl:7:3: rate_limit "x": on_store_error "panic" is not one of allow, deny, local`}},
		{"key kind with empty name", "rate_limit \"x\" {\n  requests = 1\n  period = \"1s\"\n  key = \"header:\"\n  store = \"memory\"\n}\n", []string{
			`t.hcl:4:3: rate_limit "x": key "header:" is not client_ip, route, header:NAME or claim:NAME`}},
		{"key with bad header name", "rate_limit \"x\" {\n  requests = 1\n  period = \"1s\"\n  key = \"header:X Key\"\n  store = \"memory\"\n}\n", []string{
			`t.hcl:4:3: rate_limit "x": key "header:X Key": "X Key" is not a valid header name`}},
		{"load balancer", "service \"s\" {\n  load_balancer = \"fastest\"\n  instance {\n    address = \"127.0.0.1:1\"\n  }\n}\n", []string{
			`t.hcl:2:3: service "s": load_balancer "fastest" is not one of round_robin, least_conn, random, ip_hash, weighted`}},
		{"jwt algorithm", "jwt \"j\" {\n  algorithms = [\"HS256\",\n    \"none\"]\n  secret = env(\"SECRET\")\n}\n", []string{
			`t.hcl:3:5: jwt "j": algorithm "none" is not one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA`}},

		// References.
		{"undefined service", "route \"r\" {\n  path = \"/r\"\n  service = \"bsae\"\n}\n", []string{
			`t.hcl:3:3: route "r": service "bsae" is not defined; did you mean "base"?`}},
		{"undefined jwt and rate limit", "route \"r\" {\n  path = \"/r\"\n  service = \"base\"\n  jwt = \"users\"\n  rate_limit = \"per_ip\"\n}\n", []string{
			`t.hcl:4:3: route "r": jwt "users" is not defined`,
			`t.hcl:5:3: route "r": rate_limit "per_ip" is not defined`}},
		{"roles without jwt", "route \"r\" {\n  path = \"/r\"\n  service = \"base\"\n  roles = [\"admin\"]\n}\n", []string{
			`t.hcl:4:3: route "r": roles need a jwt provider on the route`}},
		{"claim key without jwt", "rate_limit \"per_user\" {\n  requests = 1\n  period = \"1s\"\n  key = \"claim:sub\"\n  store = \"memory\"\n}\nroute \"r\" {\n  path = \"/r\"\n  service = \"base\"\n  rate_limit = \"per_user\"\n}\n", []string{
			`t.hcl:10:3: route "r": rate_limit "per_user" is keyed by claim:sub, which needs a jwt provider on the route`}},
		{"redis store without redis", "rate_limit \"x\" {\n  requests = 1\n  period = \"1s\"\n}\n", []string{
			`t.hcl:1:1: rate_limit "x": the redis store needs a redis block (or set store = "memory")`}},

		// Duplicates.
		{"duplicate service", "service \"base\" {\n  instance {\n    address = \"127.0.0.1:1\"\n  }\n}\n", []string{
			`t.hcl:7:1: duplicate service "base"; the first is at t.hcl:1:1`}},
		{"duplicate route", "route \"base\" {\n  path = \"/other\"\n  service = \"base\"\n}\n", []string{
			`t.hcl:11:1: duplicate route "base"; the first is at t.hcl:1:1`}},
		{"duplicate jwt", "jwt \"j\" {\n  algorithms = [\"HS256\"]\n  secret = env(\"SECRET\")\n}\njwt \"j\" {\n  algorithms = [\"HS256\"]\n  secret = env(\"SECRET\")\n}\n", []string{
			`t.hcl:5:1: duplicate jwt "j"; the first is at t.hcl:1:1`}},
		{"duplicate instance", "service \"s\" {\n  instance {\n    address = \"127.0.0.1:1\"\n  }\n  instance {\n    address = \"127.0.0.1:1\"\n  }\n}\n", []string{
			`t.hcl:6:5: service "s" instance: instance "127.0.0.1:1" is already listed at t.hcl:3:5`}},

		// Services.
		{"consul and instances", "consul {\n}\nservice \"s\" {\n  consul {\n  }\n  instance {\n    address = \"127.0.0.1:1\"\n  }\n}\n", []string{
			`t.hcl:6:3: service "s": static instance blocks cannot be combined with consul (at t.hcl:4:3); use one or the other`}},
		{"no instances", "service \"s\" {\n  timeout = \"1s\"\n}\n", []string{
			`t.hcl:1:1: service "s": no instances: add a consul block or instance blocks`}},
		{"service consul without consul block", "service \"s\" {\n  consul {\n    tags = [\"v1\"]\n  }\n}\n", []string{
			`t.hcl:2:3: service "s" consul: consul discovery needs a top-level consul block (consul {} takes the defaults)`}},
		{"instance problems", "service \"s\" {\n  instance {\n    weight = 0\n  }\n  instance {\n    address = \"localhost\"\n  }\n}\n", []string{
			`t.hcl:2:3: service "s" instance: address is required`,
			`t.hcl:3:5: service "s" instance: weight must be at least 1, not 0`,
			`t.hcl:6:5: service "s" instance: address "localhost" is not host:port`}},
		{"retry limits", "service \"s\" {\n  instance {\n    address = \"127.0.0.1:1\"\n  }\n  retry {\n    attempts = 0\n    backoff = \"2s\"\n    budget_ratio = 1.5\n    budget_min = -1\n    buffer_bytes = -1\n  }\n}\n", []string{
			`t.hcl:5:3: service "s" retry: max_backoff (1s) is less than backoff (2s)`,
			`t.hcl:6:5: service "s" retry: attempts must be at least 1, not 0`,
			`t.hcl:8:5: service "s" retry: budget_ratio must be between 0 and 1, not 1.5`,
			`t.hcl:9:5: service "s" retry: budget_min must be at least 0, not -1`,
			`t.hcl:10:5: service "s" retry: buffer_bytes must be at least 0, not -1`}},
		{"circuit breaker limits", "service \"s\" {\n  instance {\n    address = \"127.0.0.1:1\"\n  }\n  circuit_breaker {\n    failure_threshold = 0\n    open_timeout = \"0s\"\n    half_open_requests = 0\n    failure_statuses = [502, 99]\n    failure_ratio = 2\n    min_requests = 0\n    window = \"0s\"\n  }\n}\n", []string{
			`t.hcl:6:5: service "s" circuit_breaker: failure_threshold must be at least 1, not 0`,
			`t.hcl:7:5: service "s" circuit_breaker: open_timeout must be positive`,
			`t.hcl:8:5: service "s" circuit_breaker: half_open_requests must be at least 1, not 0`,
			`t.hcl:9:30: service "s" circuit_breaker: failure_statuses: 99 is not an HTTP status code`,
			`t.hcl:10:5: service "s" circuit_breaker: failure_ratio must be between 0 and 1 (0 turns it off), not 2`,
			`t.hcl:11:5: service "s" circuit_breaker: min_requests must be at least 1, not 0`,
			`t.hcl:12:5: service "s" circuit_breaker: window must be positive`}},
		{"transport limits", "service \"s\" {\n  instance {\n    address = \"127.0.0.1:1\"\n  }\n  transport {\n    max_idle_conns_per_host = 0\n    max_conns_per_host = -1\n    dial_timeout = \"0s\"\n  }\n}\n", []string{
			`t.hcl:6:5: service "s" transport: max_idle_conns_per_host must be at least 1, not 0`,
			`t.hcl:7:5: service "s" transport: max_conns_per_host must be at least 0, not -1`,
			`t.hcl:8:5: service "s" transport: dial_timeout must be positive`}},
		{"service timeout zero", "service \"s\" {\n  timeout = \"0s\"\n  instance {\n    address = \"127.0.0.1:1\"\n  }\n}\n", []string{
			`t.hcl:2:3: service "s": timeout must be positive`}},

		// Numbers where zero or less makes no sense.
		{"gateway numbers", "gateway {\n  max_header_bytes = 0\n  max_body_bytes = -1\n}\n", []string{
			`t.hcl:2:3: gateway: max_header_bytes must be positive`,
			`t.hcl:3:3: gateway: max_body_bytes must not be negative (0 means unlimited)`}},
		{"rate limit numbers", "rate_limit \"x\" {\n  requests = 0\n  period = \"0s\"\n  burst = -1\n  store = \"memory\"\n  expected_replicas = 0\n}\n", []string{
			`t.hcl:2:3: rate_limit "x": requests must be positive`,
			`t.hcl:3:3: rate_limit "x": period must be positive`,
			`t.hcl:4:3: rate_limit "x": burst must be positive`,
			`t.hcl:6:3: rate_limit "x": expected_replicas must be at least 1, not 0`}},
		{"rate limit required", "rate_limit \"x\" {\n  store = \"memory\"\n}\n", []string{
			`t.hcl:1:1: rate_limit "x": requests is required`,
			`t.hcl:1:1: rate_limit "x": period is required`}},
		{"burst on a sliding window", "rate_limit \"x\" {\n  algorithm = \"sliding_window\"\n  requests = 10\n  period = \"1s\"\n  burst = 5\n  store = \"memory\"\n}\n", []string{
			`t.hcl:5:3: rate_limit "x": burst applies to token_bucket only; a sliding_window allows requests per period`}},
		{"redis", "redis {\n  address = \"127.0.0.1:6379\"\n  addresses = [\"127.0.0.1:1\", \"nope\"]\n  db = -1\n  timeout = \"0s\"\n}\n", []string{
			`t.hcl:3:3: redis: set address (one node) or addresses (cluster or sentinel), not both`,
			`t.hcl:3:31: redis: addresses "nope" is not host:port`,
			`t.hcl:4:3: redis: db must not be negative`,
			`t.hcl:5:3: redis: timeout must be positive`}},

		// Listener.
		{"bad trusted proxy", "gateway {\n  trusted_proxies = [\"10.0.0.0/8\",\n    \"10.0.0.0/33\", \"::1\"]\n}\n", []string{
			`t.hcl:3:5: gateway: trusted_proxies: "10.0.0.0/33" is not a CIDR prefix such as "10.0.0.0/8" or an IP address`}},
		{"bad addresses", "gateway {\n  address = \"8080\"\n}\nadmin {\n  address = \"127.0.0.1:99999\"\n}\n", []string{
			`t.hcl:2:3: gateway: address "8080" is not host:port`,
			`t.hcl:5:3: admin: address "127.0.0.1:99999": port 99999 is out of range (0-65535)`}},
		{"unquoted words", "service \"a\" {\n  load_balancer = round_robin\n  timeout = ten\n  instance { address = \"127.0.0.1:9000\" }\n}\nroute \"r\" {\n  path = \"/x\"\n  service = \"a\"\n  methods = [GET, \"PUT\"]\n  metadata = { team = identity }\n}\njwt \"j\" {\n  algorithms = [\"HS256\"]\n  secret = \"0123456789abcdef0123456789abcdef\"\n  roles_claim = realm_access.roles\n}\n", []string{
			`t.hcl:2:19: service "a": load_balancer: a string is written in quotes: "round_robin", not round_robin`,
			`t.hcl:3:13: service "a": timeout: a string is written in quotes: "ten", not ten`,
			`t.hcl:9:14: route "r": methods: a string is written in quotes: "GET", not GET`,
			`t.hcl:10:23: route "r": metadata: a string is written in quotes: "identity", not identity`,
			`t.hcl:15:17: jwt "j": roles_claim: a string is written in quotes: "realm_access.roles", not realm_access.roles`}},
		{"admin on the gateway's address", "gateway {\n  address = \"127.0.0.1:8080\"\n}\nadmin {\n  address = \"127.0.0.1:8080\"\n}\n", []string{
			`t.hcl:5:3: admin: address "127.0.0.1:8080" is also the gateway's address`}},
		{"tls without files", "gateway {\n  tls {\n  }\n}\n", []string{
			`t.hcl:2:3: gateway tls: cert_file is required`,
			`t.hcl:2:3: gateway tls: key_file is required`}},
		{"redact header name", "log {\n  redact_headers = [\"Authorization\", \"Bad Header\"]\n}\n", []string{
			`t.hcl:2:38: log: redact_headers: "Bad Header" is not a valid header name`}},
		{"consul register", "consul {\n  address = \"\"\n  register {\n    service = \"\"\n    deregister_delay = \"-5s\"\n  }\n}\n", []string{
			`t.hcl:2:3: consul: address must not be empty`,
			`t.hcl:4:5: consul register: service must not be empty`,
			`t.hcl:5:5: consul register: deregister_delay must not be negative, got "-5s"`}},

		// JWT.
		{"short HS secret", "jwt \"j\" {\n  algorithms = [\"HS256\"]\n  secret = env(\"SHORT\")\n}\n", []string{
			`t.hcl:3:3: jwt "j": secret is 5 bytes; HS* secrets must be at least 32 bytes`}},
		{"jwt without key source", "jwt \"j\" {\n  algorithms = [\"RS256\"]\n}\n", []string{
			`t.hcl:1:1: jwt "j": no key source: set secret (HS*), public_key_file or jwks_url`}},
		{"jwt without algorithms", "jwt \"j\" {\n  secret = env(\"SECRET\")\n}\n", []string{
			`t.hcl:1:1: jwt "j": algorithms is required, as in algorithms = ["HS256"]`}},
		{"jwt key source mismatch", "jwt \"j\" {\n  algorithms = [\"RS256\", \"HS256\"]\n  jwks_url = \"https://idp.example/jwks.json\"\n  public_key_file = \"key.pub\"\n}\n", []string{
			`t.hcl:2:26: jwt "j": algorithm HS256 needs a secret`,
			`t.hcl:3:3: jwt "j": set public_key_file or jwks_url, not both`}},
		{"jwt secret with only RS", "jwt \"j\" {\n  algorithms = [\"RS256\"]\n  secret = env(\"SECRET\")\n}\n", []string{
			`t.hcl:2:17: jwt "j": algorithm RS256 needs public_key_file or jwks_url`,
			`t.hcl:3:3: jwt "j": secret is set but algorithms has no HS* algorithm`}},
		{"jwt misc", "jwt \"j\" {\n  algorithms = [\"ES256\"]\n  jwks_url = \"ftp://idp\"\n  roles_claim = \"\"\n  forward_claims = {\n    sub = \"X User\"\n  }\n}\n", []string{
			`t.hcl:3:3: jwt "j": jwks_url "ftp://idp" is not an http:// or https:// URL`,
			`t.hcl:4:3: jwt "j": roles_claim must not be empty`,
			`t.hcl:6:11: jwt "j": forward_claims: "X User" is not a valid header name`}},

		// env().
		{"missing env", "gateway {\n  address = env(\"GATEWAY_ADDR\")\n}\n", []string{
			`t.hcl:2:13: gateway: address: environment variable GATEWAY_ADDR is not set and env("GATEWAY_ADDR") has no default`}},
		{"missing env in a template", "admin {\n  address = \"127.0.0.1:${env(\"ADMIN_PORT\")}\"\n}\n", []string{
			`t.hcl:2:26: admin: address: environment variable ADMIN_PORT is not set and env("ADMIN_PORT") has no default`}},
		{"env with three arguments", "admin {\n  address = env(\"A\", \"b\", \"c\")\n}\n", []string{
			`t.hcl:2:13: admin: address: env(): takes a variable name and at most one default, as in env("NAME", "default")`}},

		// Paths and routes.
		{"path without slash", "route \"r\" {\n  path = \"users\"\n  service = \"base\"\n}\n", []string{
			`t.hcl:2:3: route "r": malformed path pattern "users": must start with '/'`}},
		{"empty param", "route \"r\" {\n  path = \"/users/:\"\n  service = \"base\"\n}\n", []string{
			`t.hcl:2:3: route "r": malformed path pattern "/users/:": parameter ":": name must match [A-Za-z_][A-Za-z0-9_]*`}},
		{"star not last", "route \"r\" {\n  path = \"/files/*/meta\"\n  service = \"base\"\n}\n", []string{
			`t.hcl:2:3: route "r": malformed path pattern "/files/*/meta": '*' is allowed only as the last segment`}},
		{"duplicate param", "route \"r\" {\n  path = \"/a/:id/b/*id\"\n  service = \"base\"\n}\n", []string{
			`t.hcl:2:3: route "r": malformed path pattern "/a/:id/b/*id": parameter name "id" used twice`}},
		{"empty segment", "route \"r\" {\n  path = \"/a//b\"\n  service = \"base\"\n}\n", []string{
			`t.hcl:2:3: route "r": malformed path pattern "/a//b": empty segment (repeated '/')`}},
		{"dot segment", "route \"r\" {\n  path = \"/a/../b\"\n  service = \"base\"\n}\n", []string{
			`t.hcl:2:3: route "r": malformed path pattern "/a/../b": segment "..": dot segments never survive normalisation`}},
		{"route required attributes", "route \"r\" {\n  methods = [\"GET\"]\n}\n", []string{
			`t.hcl:1:1: route "r": path is required`,
			`t.hcl:1:1: route "r": service is required`}},
		{"strip prefix", "route \"r\" {\n  path = \"/api/users\"\n  service = \"base\"\n  strip_prefix = \"/ap\"\n}\n", []string{
			`t.hcl:4:3: route "r": malformed strip prefix "/ap": is not a leading part of path "/api/users"`}},
		{"strip prefix over a param", "route \"r\" {\n  path = \"/:tenant/users\"\n  service = \"base\"\n  strip_prefix = \"/acme\"\n}\n", []string{
			`t.hcl:4:3: route "r": malformed strip prefix "/acme": is not a leading part of path "/:tenant/users"`}},
		{"hosts and methods", "route \"r\" {\n  path = \"/r\"\n  service = \"base\"\n  hosts = [\"Api.Example.com\", \"api.example.com\", \"https://x\"]\n  methods = [\"get\", \"GET\", \"BAD METHOD\"]\n  timeout = \"0s\"\n}\n", []string{
			`t.hcl:4:31: route "r": hosts: "api.example.com" is listed twice`,
			`t.hcl:4:50: route "r": malformed host "https://x": must not carry a port (the port of a request's Host is ignored); write IPv6 as [addr]`,
			`t.hcl:5:21: route "r": methods: "GET" is listed twice`,
			`t.hcl:5:28: route "r": malformed method "BAD METHOD": not an HTTP token`,
			`t.hcl:6:3: route "r": timeout must be positive`}},
		{"same path and method", "route \"a\" {\n  methods = [\"GET\", \"POST\"]\n  path = \"/users/:id\"\n  service = \"base\"\n}\nroute \"b\" {\n  methods = [\"post\"]\n  path = \"/users/:name\"\n  service = \"base\"\n}\n", []string{
			`t.hcl:6:1: route "b" conflicts with route "a" at t.hcl:1:1: both match POST /users/:name`}},
		{"fallback status", "route \"r\" {\n  path = \"/r\"\n  service = \"base\"\n  fallback {\n    status = 700\n  }\n}\n", []string{
			`t.hcl:5:5: route "r" fallback: status 700 is not an HTTP status code`}},

		// CORS.
		{"cors without origins", "route \"r\" {\n  path = \"/r\"\n  service = \"base\"\n  cors {\n    allowed_methods = [\"GET\"]\n  }\n}\n", []string{
			`t.hcl:4:3: route "r" cors: allowed_origins is required: the origins (or "*") that may call this route`}},
		{"cors star with credentials", "route \"r\" {\n  path = \"/r\"\n  service = \"base\"\n  cors {\n    allowed_origins = [\"*\"]\n    allow_credentials = true\n  }\n}\n", []string{
			`t.hcl:6:5: route "r" cors: allow_credentials with allowed_origins = ["*"] would let every site send credentialed requests; list the origins`}},
		{"cors values", "route \"r\" {\n  path = \"/r\"\n  service = \"base\"\n  cors {\n    allowed_origins = [\"https://app.example.com/\", \"*\"]\n    allowed_methods = [\"GET\", \"NOT A METHOD\"]\n    allowed_headers = [\"*\", \"X Bad\"]\n    exposed_headers = [\"*\", \"X-Trace\"]\n    max_age = \"-1s\"\n  }\n}\n", []string{
			`t.hcl:5:24: route "r" cors: allowed_origins: "https://app.example.com/" is not an origin such as "https://app.example.com"`,
			`t.hcl:5:52: route "r" cors: allowed_origins: "*" already allows every origin; list origins or "*" alone`,
			`t.hcl:6:31: route "r" cors: allowed_methods: malformed method "NOT A METHOD": not an HTTP token`,
			`t.hcl:7:29: route "r" cors: allowed_headers: "X Bad" is not a valid header name`,
			`t.hcl:9:5: route "r" cors: max_age must not be negative, got "-1s"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, ds := ParseWithEnv(map[string][]byte{"t.hcl": []byte(tc.src + tail)}, envOf(vars))
			if cfg != nil {
				t.Errorf("got a config along with diagnostics")
			}
			if got := diagStrings(ds); !slices.Equal(got, tc.want) {
				t.Errorf("diagnostics:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(tc.want, "\n      "))
			}
		})
	}
}

// TestDesignExample decodes the full example of the language (the blocks of
// docs/configuration.md), env vars supplied, in full.
func TestDesignExample(t *testing.T) {
	vars := map[string]string{
		"GATEWAY_ADDR":     "0.0.0.0:18080",
		"CONSUL_HTTP_ADDR": "consul.internal:8500",
		"JWT_SECRET":       "a-secret-of-at-least-32-bytes-!!",
		"REDIS_PASSWORD":   "hunter2",
	}
	cfg := mustParse(t, designExample, vars)
	at := func(line, col int) Pos { return Pos{File: "t.hcl", Line: line, Column: col} }
	want := &Config{
		Gateway: Gateway{
			Pos: at(1, 1), Address: "0.0.0.0:18080", ShutdownTimeout: 30 * time.Second,
			ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second, ClientWriteTimeout: 30 * time.Second,
			MaxHeaderBytes: 65536, MaxBodyBytes: 10485760,
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
			TLS:            &TLS{Pos: at(9, 3), CertFile: "cert.pem", KeyFile: "key.pem", MinVersion: tls.VersionTLS12},
		},
		Admin: Admin{Pos: at(16, 1), Address: "127.0.0.1:9901"},
		Log: Log{Pos: at(20, 1), Level: "info", Format: "json", AccessLog: true,
			RedactHeaders: []string{"Authorization", "Cookie", "Set-Cookie", "X-Api-Key"}, AppFormat: "text"},
		Consul: &Consul{Pos: at(27, 1), Address: "consul.internal:8500", WaitTime: 5 * time.Minute,
			Register: &Register{Pos: at(32, 3), Service: "gateway", Tags: []string{"edge"}, DeregisterDelay: 5 * time.Second}},
		Redis: &Redis{Pos: at(40, 1), Address: "127.0.0.1:6379", Password: "hunter2", Timeout: 50 * time.Millisecond},
		JWT: []JWT{{
			Pos: at(47, 1), Name: "users", Algorithms: []string{"HS256"}, Secret: vars["JWT_SECRET"],
			Issuer: "infinity-x-one", Audience: []string{"api"}, Leeway: 30 * time.Second, RolesClaim: "roles",
			ForwardClaims: map[string]string{"sub": "X-User-Id"}, ForwardAuthorization: true,
		}},
		RateLimits: []RateLimit{{
			Pos: at(59, 1), Name: "per_client", Algorithm: "token_bucket", Requests: 100, Period: time.Minute,
			Burst: 20, Key: "client_ip", KeyKind: "client_ip", Store: "redis", OnStoreError: "allow", ExpectedReplicas: 1,
			MaxKeys: 100000, ClientIPv6Prefix: 64,
		}},
		Services: []Service{{
			Pos: at(72, 1), Name: "users",
			Consul:       &ServiceConsul{Pos: at(73, 3), Name: "users", Tags: []string{"v1"}},
			LoadBalancer: "round_robin", Timeout: 10 * time.Second, IdleTimeout: time.Minute,
			Retry: &Retry{Pos: at(86, 3), Attempts: 3, Backoff: 50 * time.Millisecond, MaxBackoff: time.Second,
				BudgetRatio: 0.2, BudgetWindow: 10 * time.Second, BudgetMin: 10, BufferBytes: 64 << 10},
			CircuitBreaker: &CircuitBreaker{Pos: at(95, 3), FailureThreshold: 5, OpenTimeout: 30 * time.Second,
				HalfOpenRequests: 1, FailureStatuses: []int{502, 503, 504}, MinRequests: 20, Window: 10 * time.Second},
			Transport: Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second, DialTimeout: 5 * time.Second},
		}},
		Routes: []Route{{
			Pos: at(102, 1), Name: "get-user", Hosts: []string{"api.example.com"}, Methods: []string{"GET"},
			Path: "/api/users/:id", Service: "users", StripPrefix: "/api", JWT: "users",
			Roles: []string{"admin", "reader"}, RateLimit: "per_client", Timeout: 5 * time.Second,
			Metadata: map[string]string{"team": "identity"},
			Fallback: &Fallback{Pos: at(113, 3), Status: 503, ContentType: "application/json",
				Body: `{"message":"users are resting"}`},
			CORS: &CORS{Pos: at(118, 3), AllowedOrigins: []string{"https://app.example.com"},
				AllowedMethods: []string{"GET", "POST"}},
		}},
	}
	equal(t, "config", cfg, want)
}

// TestExtraFields covers the attributes beyond that example (transport, token sources,
// sentinel, breaker ratios …).
func TestExtraFields(t *testing.T) {
	src := `
redis {
  addresses   = ["10.0.0.1:26379", "10.0.0.2:26379"]
  master_name = "mymaster"
  db          = 2
}
jwt "idp" {
  algorithms            = ["RS256", "ES256"]
  jwks_url              = "http://127.0.0.1:8081/jwks.json"
  token_cookie          = "session"
  token_query           = "access_token"
  forward_authorization = false
  roles_claim           = "groups"
  forward_claims        = { sub = "x-user-id", email = "X-USER-EMAIL" }
}
rate_limit "per_user" {
  algorithm = "sliding_window"
  requests  = 10
  period    = "1s"
  key       = "claim:sub"
  store     = "memory"
  on_store_error = "local"
  expected_replicas = 3
}
rate_limit "per_key" {
  requests = 5
  period   = "10s"
  key      = "header:x-api-key"
  store    = "redis"
}
service "api" {
  load_balancer = "weighted"
  instance {
    address = "127.0.0.1:9001"
    weight  = 3
  }
  instance {
    address = "[::1]:9002"
  }
  transport {
    max_idle_conns_per_host = 32
    max_conns_per_host      = 100
    idle_conn_timeout       = "0s"
    dial_timeout            = "1s"
  }
  retry {
    attempts        = 2
    idempotency_key = true
    buffer_bytes    = 0
    budget_min      = 0
    budget_ratio    = 0
  }
  circuit_breaker {
    failure_statuses = [500, 503]
    failure_ratio    = 0.5
    min_requests     = 50
    window           = "1m"
  }
}
route "api" {
  hosts   = ["API.Example.com"]
  methods = ["get", "Post"]
  path    = "/v1/*rest"
  service = "api"
  jwt     = "idp"
  rate_limit = "per_user"
  cors {
    allowed_origins   = ["https://app.example.com", "http://localhost:3000"]
    allowed_methods   = ["get", "put"]
    allowed_headers   = ["content-type", "*"]
    exposed_headers   = ["x-request-id"]
    allow_credentials = true
    max_age           = "10m"
  }
}
route "keyed" {
  path       = "/v2"
  service    = "api"
  rate_limit = "per_key"
}
`
	cfg := mustParse(t, src, nil)
	at := func(line, col int) Pos { return Pos{File: "t.hcl", Line: line, Column: col} }
	equal(t, "redis", cfg.Redis, &Redis{Pos: at(2, 1), Addresses: []string{"10.0.0.1:26379", "10.0.0.2:26379"},
		MasterName: "mymaster", DB: 2, Timeout: 50 * time.Millisecond})
	equal(t, "jwt", cfg.JWT, []JWT{{Pos: at(7, 1), Name: "idp", Algorithms: []string{"RS256", "ES256"},
		JWKSURL: "http://127.0.0.1:8081/jwks.json", TokenCookie: "session", TokenQuery: "access_token",
		RolesClaim: "groups", ForwardClaims: map[string]string{"sub": "X-User-Id", "email": "X-User-Email"}}})
	equal(t, "rate limits", cfg.RateLimits, []RateLimit{
		{Pos: at(16, 1), Name: "per_user", Algorithm: "sliding_window", Requests: 10, Period: time.Second, Burst: 10,
			Key: "claim:sub", KeyKind: "claim", KeyName: "sub", Store: "memory", OnStoreError: "local", ExpectedReplicas: 3,
			MaxKeys: 100000, ClientIPv6Prefix: 64},
		{Pos: at(25, 1), Name: "per_key", Algorithm: "token_bucket", Requests: 5, Period: 10 * time.Second, Burst: 5,
			Key: "header:x-api-key", KeyKind: "header", KeyName: "X-Api-Key", Store: "redis", OnStoreError: "allow", ExpectedReplicas: 1,
			MaxKeys: 100000, ClientIPv6Prefix: 64},
	})
	equal(t, "service", cfg.Services, []Service{{
		Pos: at(31, 1), Name: "api", LoadBalancer: "weighted", Timeout: 30 * time.Second, IdleTimeout: time.Minute,
		Instances: []Instance{{Pos: at(33, 3), Address: "127.0.0.1:9001", Weight: 3}, {Pos: at(37, 3), Address: "[::1]:9002", Weight: 1}},
		Transport: Transport{Pos: at(40, 3), MaxIdleConnsPerHost: 32, MaxConnsPerHost: 100, DialTimeout: time.Second},
		Retry: &Retry{Pos: at(46, 3), Attempts: 2, Backoff: 50 * time.Millisecond, MaxBackoff: time.Second,
			BudgetWindow: 10 * time.Second, IdempotencyKey: true},
		CircuitBreaker: &CircuitBreaker{Pos: at(53, 3), FailureThreshold: 5, OpenTimeout: 30 * time.Second, HalfOpenRequests: 1,
			FailureStatuses: []int{500, 503}, FailureRatio: 0.5, MinRequests: 50, Window: time.Minute},
	}})
	equal(t, "routes", cfg.Routes, []Route{
		{Pos: at(60, 1), Name: "api", Hosts: []string{"api.example.com"}, Methods: []string{"GET", "POST"},
			Path: "/v1/*rest", Service: "api", JWT: "idp", RateLimit: "per_user",
			CORS: &CORS{Pos: at(67, 3), AllowedOrigins: []string{"https://app.example.com", "http://localhost:3000"},
				AllowedMethods: []string{"GET", "PUT"}, AllowedHeaders: []string{"Content-Type", "*"},
				ExposedHeaders: []string{"X-Request-Id"}, AllowCredentials: true, MaxAge: 10 * time.Minute}},
		{Pos: at(76, 1), Name: "keyed", Path: "/v2", Service: "api", RateLimit: "per_key"},
	})
}

// TestDefaults checks what a config gets for what it leaves out, and for empty blocks.
func TestDefaults(t *testing.T) {
	t.Run("no optional blocks", func(t *testing.T) {
		cfg := mustParse(t, tail, nil)
		equal(t, "gateway", cfg.Gateway, Gateway{Address: "0.0.0.0:8080", ShutdownTimeout: 30 * time.Second,
			ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second, ClientWriteTimeout: 30 * time.Second, MaxHeaderBytes: 65536, MaxBodyBytes: 10 << 20})
		equal(t, "admin", cfg.Admin, Admin{Address: "127.0.0.1:9901"})
		equal(t, "log", cfg.Log, Log{Level: "info", Format: "json", AccessLog: true,
			RedactHeaders: []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key"}, AppFormat: "text"})
		if cfg.Consul != nil || cfg.Redis != nil || cfg.JWT != nil || cfg.RateLimits != nil {
			t.Errorf("absent blocks decoded: %+v", cfg)
		}
		s := cfg.Services[0]
		equal(t, "service", s, Service{Pos: Pos{"t.hcl", 2, 1}, Name: "base", LoadBalancer: "round_robin", Timeout: 30 * time.Second, IdleTimeout: time.Minute,
			Instances: []Instance{{Pos: Pos{"t.hcl", 3, 3}, Address: "127.0.0.1:9000", Weight: 1}},
			Transport: Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second, DialTimeout: 5 * time.Second}})
		equal(t, "route", cfg.Routes[0], Route{Pos: Pos{"t.hcl", 7, 1}, Name: "base", Path: "/base", Service: "base"})
	})
	t.Run("empty blocks", func(t *testing.T) {
		src := `
gateway {
  tls {
    cert_file = "c.pem"
    key_file  = "k.pem"
  }
}
admin {}
log {}
consul {
  register {}
}
redis {}
jwt "j" {
  algorithms = ["EdDSA"]
  public_key_file = "k.pub"
}
rate_limit "r" {
  requests = 7
  period   = "1m"
}
service "s" {
  consul {}
  retry {}
  circuit_breaker {}
  transport {}
}
route "r" {
  path    = "/"
  service = "s"
  fallback {}
  cors {
    allowed_origins = ["*"]
  }
}
`
		cfg := mustParse(t, src, map[string]string{"CONSUL_HTTP_ADDR": "10.1.1.1:8500"})
		at := func(line, col int) Pos { return Pos{File: "t.hcl", Line: line, Column: col} }
		equal(t, "tls", cfg.Gateway.TLS, &TLS{Pos: at(3, 3), CertFile: "c.pem", KeyFile: "k.pem", MinVersion: tls.VersionTLS12})
		equal(t, "admin", cfg.Admin, Admin{Pos: at(8, 1), Address: "127.0.0.1:9901"})
		equal(t, "log", cfg.Log, Log{Pos: at(9, 1), Level: "info", Format: "json", AccessLog: true, RedactHeaders: DefaultRedactHeaders(), AppFormat: "text"})
		equal(t, "consul", cfg.Consul, &Consul{Pos: at(10, 1), Address: "10.1.1.1:8500", WaitTime: 5 * time.Minute,
			Register: &Register{Pos: at(11, 3), Service: "gateway", DeregisterDelay: 5 * time.Second}})
		equal(t, "redis", cfg.Redis, &Redis{Pos: at(13, 1), Address: "127.0.0.1:6379", Timeout: 50 * time.Millisecond})
		equal(t, "jwt", cfg.JWT[0], JWT{Pos: at(14, 1), Name: "j", Algorithms: []string{"EdDSA"}, PublicKeyFile: "k.pub",
			RolesClaim: "roles", ForwardAuthorization: true})
		equal(t, "rate limit", cfg.RateLimits[0], RateLimit{Pos: at(18, 1), Name: "r", Algorithm: "token_bucket", Requests: 7,
			Period: time.Minute, Burst: 7, Key: "client_ip", KeyKind: "client_ip", Store: "redis", OnStoreError: "allow", ExpectedReplicas: 1,
			MaxKeys: 100000, ClientIPv6Prefix: 64})
		equal(t, "service", cfg.Services[0], Service{Pos: at(22, 1), Name: "s", LoadBalancer: "round_robin", Timeout: 30 * time.Second, IdleTimeout: time.Minute,
			Consul: &ServiceConsul{Pos: at(23, 3), Name: "s"},
			Retry: &Retry{Pos: at(24, 3), Attempts: 3, Backoff: 50 * time.Millisecond, MaxBackoff: time.Second, BudgetRatio: 0.2,
				BudgetWindow: 10 * time.Second, BudgetMin: 10, BufferBytes: 64 << 10},
			CircuitBreaker: &CircuitBreaker{Pos: at(25, 3), FailureThreshold: 5, OpenTimeout: 30 * time.Second, HalfOpenRequests: 1,
				FailureStatuses: []int{502, 503, 504}, MinRequests: 20, Window: 10 * time.Second},
			Transport: Transport{Pos: at(26, 3), MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second, DialTimeout: 5 * time.Second}})
		equal(t, "route", cfg.Routes[0], Route{Pos: at(28, 1), Name: "r", Path: "/", Service: "s",
			Fallback: &Fallback{Pos: at(31, 3), Status: 503}, CORS: &CORS{Pos: at(32, 3), AllowedOrigins: []string{"*"}}})
	})
	t.Run("consul address without CONSUL_HTTP_ADDR", func(t *testing.T) {
		cfg := mustParse(t, "consul {}\n"+tail, nil)
		if cfg.Consul.Address != DefaultConsulAddress {
			t.Errorf("consul address = %q, want %q", cfg.Consul.Address, DefaultConsulAddress)
		}
	})
	t.Run("GATEWAY_ADDR overrides the default address only", func(t *testing.T) {
		env := map[string]string{"GATEWAY_ADDR": "127.0.0.1:7777"}
		if cfg := mustParse(t, tail, env); cfg.Gateway.Address != "127.0.0.1:7777" {
			t.Errorf("no gateway block: address = %q", cfg.Gateway.Address)
		}
		if cfg := mustParse(t, "gateway {}\n"+tail, env); cfg.Gateway.Address != "127.0.0.1:7777" {
			t.Errorf("gateway block without address: address = %q", cfg.Gateway.Address)
		}
		if cfg := mustParse(t, "gateway {\n  address = \"127.0.0.1:1\"\n}\n"+tail, env); cfg.Gateway.Address != "127.0.0.1:1" {
			t.Errorf("written address: address = %q", cfg.Gateway.Address)
		}
	})
	t.Run("null means default", func(t *testing.T) {
		cfg := mustParse(t, "gateway {\n  address = null\n}\n"+tail, nil)
		if cfg.Gateway.Address != DefaultGatewayAddress {
			t.Errorf("address = %q", cfg.Gateway.Address)
		}
	})
	t.Run("zero where zero means something", func(t *testing.T) {
		cfg := mustParse(t, "gateway {\n  max_body_bytes = 0\n}\n"+tail, nil)
		if cfg.Gateway.MaxBodyBytes != 0 {
			t.Errorf("max_body_bytes = %d, want 0 (unlimited)", cfg.Gateway.MaxBodyBytes)
		}
	})
}

func TestNonOverlappingRoutes(t *testing.T) {
	src := `
route "get" {
  methods = ["GET"]
  path    = "/users/:id"
  service = "base"
}
route "put" {
  methods = ["PUT"]
  path    = "/users/:id"
  service = "base"
}
route "other-host" {
  hosts   = ["admin.example.com"]
  methods = ["PATCH"]
  path    = "/users/:id"
  service = "base"
}
route "other-host-2" {
  hosts   = ["api.example.com"]
  methods = ["PATCH"]
  path    = "/users/:id"
  service = "base"
}
route "static-beats-param" {
  methods = ["GET"]
  path    = "/users/me"
  service = "base"
}
route "wildcard" {
  path    = "/users/*"
  service = "base"
}
route "trailing-slash" {
  path    = "/base/"
  service = "base"
}
`
	cfg := mustParse(t, src+tail, nil)
	if len(cfg.Routes) != 8 {
		t.Fatalf("got %d routes", len(cfg.Routes))
	}
}

func TestEnv(t *testing.T) {
	src := `
gateway {
  address = env("ADDR", "127.0.0.1:1111")
}
admin {
  address = "127.0.0.1:${env("ADMIN_PORT", "2222")}"
}
consul {
  token = env("TOKEN")
  datacenter = env("EMPTY", "dc9")
}
` + tail
	cfg := mustParse(t, src, map[string]string{"ADMIN_PORT": "3333", "TOKEN": "t0k", "EMPTY": ""})
	if got := cfg.Gateway.Address; got != "127.0.0.1:1111" {
		t.Errorf("default not used: %q", got)
	}
	if got := cfg.Admin.Address; got != "127.0.0.1:3333" {
		t.Errorf("variable in a template: %q", got)
	}
	if cfg.Consul.Token != "t0k" {
		t.Errorf("token = %q", cfg.Consul.Token)
	}
	if cfg.Consul.Datacenter != "" {
		t.Errorf("a variable set to \"\" is set: datacenter = %q", cfg.Consul.Datacenter)
	}

	t.Run("process environment by default", func(t *testing.T) {
		path, ok := os.LookupEnv("PATH")
		if !ok {
			t.Fatal("PATH is not set")
		}
		cfg, ds := Parse(map[string][]byte{"t.hcl": []byte("consul {\n  token = env(\"PATH\")\n}\n" + tail)})
		if len(ds) > 0 {
			t.Fatal(ds)
		}
		if cfg.Consul.Token != path {
			t.Errorf("token = %q, want $PATH", cfg.Consul.Token)
		}
	})
}

func TestMultipleFiles(t *testing.T) {
	t.Run("merged in name order", func(t *testing.T) {
		files := map[string][]byte{
			"b.hcl": []byte("route \"b\" {\n  path = \"/b\"\n  service = \"s\"\n}\n"),
			"a.hcl": []byte("route \"a\" {\n  path = \"/a\"\n  service = \"s\"\n}\nlog {\n  level = \"debug\"\n}\n"),
			"c.hcl": []byte("service \"s\" {\n  instance {\n    address = \"127.0.0.1:1\"\n  }\n}\n"),
		}
		cfg, ds := ParseWithEnv(files, envOf(nil))
		if len(ds) > 0 {
			t.Fatal(ds)
		}
		if got := routeNames(cfg); !slices.Equal(got, []string{"a", "b"}) {
			t.Errorf("routes %v", got)
		}
		if cfg.Log.Level != "debug" || cfg.Log.Pos != (Pos{"a.hcl", 5, 1}) || cfg.Services[0].Pos != (Pos{"c.hcl", 1, 1}) {
			t.Errorf("log %+v, service pos %v", cfg.Log, cfg.Services[0].Pos)
		}
	})
	t.Run("duplicates across files", func(t *testing.T) {
		files := map[string][]byte{
			"a.hcl": []byte("gateway {\n}\n" + tail),
			"b.hcl": []byte("\nservice \"base\" {\n  consul {\n  }\n}\n  gateway {\n}\nconsul {\n}\n"),
			"c.hcl": []byte("consul {\n}\nroute \"base\" {\n  path = \"/c\"\n  service = \"base\"\n}\n"),
		}
		_, ds := ParseWithEnv(files, envOf(nil))
		want := []string{
			"b.hcl:2:1: duplicate service \"base\"; the first is at a.hcl:4:1",
			"b.hcl:6:3: duplicate gateway block; the first is at a.hcl:1:1",
			"c.hcl:1:1: duplicate consul block; the first is at b.hcl:8:1",
			"c.hcl:3:1: duplicate route \"base\"; the first is at a.hcl:9:1",
		}
		if got := diagStrings(ds); !slices.Equal(got, want) {
			t.Errorf("diagnostics:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
		}
	})
	t.Run("no route", func(t *testing.T) {
		_, ds := ParseWithEnv(map[string][]byte{"x.hcl": []byte("service \"s\" {\n  instance {\n    address = \"127.0.0.1:1\"\n  }\n}\n"), "y.hcl": nil}, envOf(nil))
		want := []string{"x.hcl:1:1: no route block: a config needs at least one route"}
		if got := diagStrings(ds); !slices.Equal(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("no files", func(t *testing.T) {
		if _, ds := Parse(nil); len(ds) != 1 || ds[0].Message != "no config files" {
			t.Errorf("got %v", ds)
		}
	})
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("10-services.hcl", "service \"s\" {\n  instance {\n    address = env(\"S_ADDR\")\n  }\n}\n")
	write("20-routes.hcl", "route \"r\" {\n  path = \"/r\"\n  service = \"s\"\n}\n")
	write("README.md", "not config {")
	write("sub/ignored.hcl", "not config {")
	write("broken.hcl.bak", "not config {")

	t.Run("directory", func(t *testing.T) {
		cfg, ds := LoadWithEnv(dir, envOf(map[string]string{"S_ADDR": "127.0.0.1:7"}))
		if len(ds) > 0 {
			t.Fatal(ds)
		}
		if cfg.Services[0].Instances[0].Address != "127.0.0.1:7" || cfg.Route("r") == nil {
			t.Errorf("got %+v", cfg)
		}
		if want := (Pos{filepath.Join(dir, "20-routes.hcl"), 1, 1}); cfg.Routes[0].Pos != want {
			t.Errorf("route pos %v, want %v", cfg.Routes[0].Pos, want)
		}
	})
	t.Run("directory diagnostics name the file", func(t *testing.T) {
		_, ds := LoadWithEnv(dir, envOf(nil))
		want := []string{filepath.Join(dir, "10-services.hcl") +
			`:3:15: service "s" instance: address: environment variable S_ADDR is not set and env("S_ADDR") has no default`}
		if got := diagStrings(ds); !slices.Equal(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("file", func(t *testing.T) {
		p := write("one/gateway.hcl", tail)
		cfg, ds := Load(p)
		if len(ds) > 0 || cfg.Service("base") == nil {
			t.Fatalf("cfg %+v, diagnostics %v", cfg, ds)
		}
	})
	t.Run("missing path", func(t *testing.T) {
		p := filepath.Join(dir, "nope.hcl")
		_, ds := Load(p)
		if len(ds) != 1 || ds[0].Pos != (Pos{File: p}) || !strings.Contains(ds[0].String(), "no such file") ||
			!strings.HasPrefix(ds[0].String(), p+": ") {
			t.Errorf("got %v", ds)
		}
	})
	t.Run("empty directory", func(t *testing.T) {
		empty := t.TempDir()
		_, ds := Load(empty)
		want := []string{empty + ": no *.hcl files in this directory"}
		if got := diagStrings(ds); !slices.Equal(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	})
}

func TestLookups(t *testing.T) {
	src := `
jwt "j" {
  algorithms = ["HS512"]
  secret     = "0123456789abcdef0123456789abcdef"
}
rate_limit "rl" {
  requests = 1
  period   = "1s"
  store    = "memory"
}
` + tail
	cfg := mustParse(t, src, nil)
	if s := cfg.Service("base"); s == nil || s != &cfg.Services[0] {
		t.Errorf("Service(base) = %p", s)
	}
	if r := cfg.Route("base"); r == nil || r != &cfg.Routes[0] {
		t.Errorf("Route(base) = %p", r)
	}
	if j := cfg.JWTProvider("j"); j == nil || j.Name != "j" {
		t.Errorf("JWTProvider(j) = %v", j)
	}
	if r := cfg.RateLimit("rl"); r == nil || r.Name != "rl" {
		t.Errorf("RateLimit(rl) = %v", r)
	}
	if cfg.Service("x") != nil || cfg.Route("x") != nil || cfg.JWTProvider("x") != nil || cfg.RateLimit("x") != nil {
		t.Error("lookup of an unknown name returned something")
	}
}

func TestDiagnosticsFormat(t *testing.T) {
	ds := Diagnostics{
		{Pos: Pos{"a.hcl", 3, 7}, Message: "first"},
		{Pos: Pos{File: "dir"}, Message: "second"},
	}
	if got, want := ds.Error(), "a.hcl:3:7: first\ndir: second"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var err error = ds
	if err.Error() == "" {
		t.Error("empty error")
	}
}

func BenchmarkParseDesignExample(b *testing.B) {
	files := map[string][]byte{"t.hcl": []byte(designExample)}
	lookup := envOf(map[string]string{"JWT_SECRET": "a-secret-of-at-least-32-bytes-!!"})
	b.ReportAllocs()
	for b.Loop() {
		if _, ds := ParseWithEnv(files, lookup); len(ds) > 0 {
			b.Fatal(ds)
		}
	}
}

const designExample = `gateway {
  address           = env("GATEWAY_ADDR", "0.0.0.0:8080")
  shutdown_timeout  = "30s"       # drain in-flight requests on SIGTERM/SIGINT
  read_header_timeout = "10s"
  idle_timeout      = "120s"
  max_header_bytes  = 65536
  max_body_bytes    = 10485760    # 413 above this (0 = unlimited)
  trusted_proxies   = ["127.0.0.1/32"]  # only these may set X-Forwarded-For
  tls {
    cert_file  = "cert.pem"
    key_file   = "key.pem"
    min_version = "1.2"
  }
}

admin {
  address = "127.0.0.1:9901"      # /healthz /readyz /metrics /admin/routes /admin/services
}

log {
  level          = "info"         # trace | debug | info | warn | error
  format         = "json"         # json | combined | common | dev  (access log)
  access_log     = true           # false: no access log at all
  redact_headers = ["Authorization", "Cookie", "Set-Cookie", "X-Api-Key"]
}

consul {
  address    = env("CONSUL_HTTP_ADDR", "127.0.0.1:8500")
  token      = env("CONSUL_HTTP_TOKEN", "")
  datacenter = ""
  wait_time  = "5m"               # blocking query wait
  register {                      # register this replica in Consul
    service  = "gateway"
    address  = ""                 # default: the listener's host
    tags     = ["edge"]
    deregister_delay = "5s"       # on SIGTERM: readyz 503, deregister, wait, then drain
  }
}

redis {
  address  = env("REDIS_ADDR", "127.0.0.1:6379")   # or addresses = [...] for cluster/sentinel
  password = env("REDIS_PASSWORD", "")
  db       = 0
  timeout  = "50ms"               # per limiter call
}

jwt "users" {
  algorithms     = ["HS256"]      # HS256/384/512, RS*, PS*, ES*, EdDSA
  secret         = env("JWT_SECRET")         # HS*
  # public_key_file = "key.pub"              # RS*/PS*/ES*/EdDSA
  # jwks_url     = "https://idp.example/.well-known/jwks.json"
  issuer         = "infinity-x-one"
  audience       = ["api"]
  leeway         = "30s"
  roles_claim    = "roles"
  forward_claims = { sub = "X-User-Id" }     # claim -> upstream header
}

rate_limit "per_client" {
  algorithm      = "token_bucket" # token_bucket | sliding_window
  requests       = 100            # per period
  period         = "1m"
  burst          = 20             # token bucket capacity (default: requests)
  key            = "client_ip"    # client_ip | header:NAME | claim:NAME | route
  store          = "redis"        # redis | memory
  on_store_error = "allow"        # allow | deny | local (memory store, limit / expected_replicas)
  expected_replicas = 1
  max_keys       = 100000         # memory store (and local fallback): keys held at most, oldest evicted, counted by a metric
  client_ipv6_prefix = 64         # key client_ip: an IPv6 client is keyed by this prefix (a /64 is one client)
}

service "users" {
  consul {                        # instances from Consul's health API, passing only
    name   = "users"
    tags   = ["v1"]                 # instance must carry all of them
    stale  = false                  # allow any server to answer
    cached = false                  # use the agent's cache
  }
  # static instances instead of (never together with) consul:
  # instance {
  #   address = "127.0.0.1:9001"
  #   weight  = 2
  # }
  load_balancer = "round_robin"   # round_robin | least_conn | random | ip_hash | weighted
  timeout       = "10s"
  retry {
    attempts    = 3               # total tries, first included
    backoff     = "50ms"          # exponential, with full jitter
    max_backoff = "1s"
    budget_ratio = 0.2            # retries at most 20% of requests over budget_window
    budget_window = "10s"
    budget_min   = 10             # retries always allowed per window, whatever the ratio
    idempotency_key = false       # also retry non-idempotent requests carrying Idempotency-Key
  }
  circuit_breaker {
    failure_threshold  = 5        # consecutive failures that open it
    open_timeout       = "30s"    # then half-open
    half_open_requests = 1        # trial requests in half-open
  }
}

route "get-user" {
  hosts        = ["api.example.com"]    # optional
  methods      = ["GET"]                # optional: any method
  path         = "/api/users/:id"       # static, :param segments, trailing * or *name
  service      = "users"
  strip_prefix = "/api"
  jwt          = "users"                # require a valid token from this provider
  roles        = ["admin", "reader"]    # any one of them
  rate_limit   = "per_client"
  timeout      = "5s"                   # overrides the service's
  metadata     = { team = "identity" }
  fallback {                            # served instead of 503 when no instance can be tried
    status       = 503
    content_type = "application/json"
    body         = "{\"message\":\"users are resting\"}"
  }
  cors {
    allowed_origins = ["https://app.example.com"]
    allowed_methods = ["GET", "POST"]
  }
}
`
