//go:build tools

// Package tools pins the Consul agent that tests run against (v1.14.11, MPL-2.0).
// It is a separate module so the gateway's go.mod stays small.
package tools

import _ "github.com/hashicorp/consul"
