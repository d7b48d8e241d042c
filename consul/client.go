package consul

import (
	"fmt"
	"os"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
)

// DefaultAddress is the agent address used when neither Config.Address nor
// CONSUL_HTTP_ADDR names one (as the Consul CLI does).
const DefaultAddress = "127.0.0.1:8500"

// Config selects the Consul agent to talk to. Zero values fall back to the Consul
// CLI's environment variables, read by api.DefaultConfig: CONSUL_HTTP_ADDR,
// CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_AUTH, CONSUL_HTTP_SSL,
// CONSUL_HTTP_SSL_VERIFY, CONSUL_CACERT, CONSUL_CAPATH, CONSUL_CLIENT_CERT,
// CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME, CONSUL_NAMESPACE, CONSUL_PARTITION.
// A non-empty field overrides its variable.
type Config struct {
	// Address is host:port, optionally with an http://, https:// or unix://
	// prefix. "" means CONSUL_HTTP_ADDR, else DefaultAddress.
	Address string
	// Token is the ACL token. "" means CONSUL_HTTP_TOKEN (or _FILE), else none.
	Token string
	// Datacenter is the default datacenter of every call. "" means the agent's.
	Datacenter string
	// Logger receives the API client's warnings (an unparsable variable). nil
	// means no logging.
	Logger hclog.Logger
}

// NewClient builds a Consul API client from cfg and the environment. The client
// pools connections and has no overall timeout, which blocking queries need;
// every call of this package bounds itself with a context instead.
func NewClient(cfg Config) (*api.Client, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	ac := api.DefaultConfigWithLogger(logger)
	switch {
	case cfg.Address != "":
		ac.Address = cfg.Address
	case os.Getenv(api.HTTPAddrEnvName) == "":
		ac.Address = DefaultAddress // the api package's own default is localhost:8500
	}
	if cfg.Token != "" {
		ac.Token = cfg.Token
		ac.TokenFile = ""
	}
	if cfg.Datacenter != "" {
		ac.Datacenter = cfg.Datacenter
	}
	c, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("consul: client for %s: %w", ac.Address, err)
	}
	return c, nil
}
