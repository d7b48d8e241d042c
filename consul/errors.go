package consul

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/consul/api"
)

var (
	// ErrACL reports that Consul refused the ACL token (HTTP 403: "ACL not found",
	// "Permission denied"). Errors wrapping it carry Consul's own message; match
	// with errors.Is and show the error text to the operator (e.g. in /readyz).
	ErrACL = errors.New("consul: ACL token rejected (check consul.token or CONSUL_HTTP_TOKEN)")

	// ErrInvalidOptions wraps every validation failure of WatchOptions and
	// Registration.
	ErrInvalidOptions = errors.New("consul: invalid options")

	// ErrAlreadyRunning is returned by a second call to Watcher.Run.
	ErrAlreadyRunning = errors.New("consul: watcher already running")
)

// classify turns an error of a Consul call into the package's error: an ACL
// refusal wraps ErrACL, anything else is wrapped with what was being done.
func classify(what string, err error) error {
	var se api.StatusError
	if errors.As(err, &se) {
		if se.Code == http.StatusForbidden || isACLMessage(se.Body) {
			return fmt.Errorf("%w: %s: HTTP %d: %s", ErrACL, what, se.Code, se.Body)
		}
		return fmt.Errorf("consul: %s: HTTP %d: %s", what, se.Code, se.Body)
	}
	if isACLMessage(err.Error()) {
		return fmt.Errorf("%w: %s: %v", ErrACL, what, err)
	}
	return fmt.Errorf("consul: %s: %w", what, err)
}

// isACLMessage reports whether a Consul error text is an ACL refusal. Consul
// answers these with 403, but older agents and RPC-forwarded errors have been seen
// with other codes and the same words.
func isACLMessage(s string) bool {
	return strings.Contains(s, "ACL not found") || strings.Contains(s, "Permission denied")
}
