package consul

import (
	"cmp"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/hashicorp/consul/api"
)

// Instance is one healthy instance of a service as Consul's health API reports
// it. Slices of Instance handed out by this package are never modified afterwards;
// receivers must not modify them either.
type Instance struct {
	// ID is the service ID, unique on its node.
	ID string
	// Node is the name of the node the instance is registered on.
	Node string
	// Address is the service's address, or the node's when the service has none.
	Address string
	// Port is the service port, 1–65535.
	Port int
	// Weight is Service.Weights.Passing (Consul's default is 1); at least 1.
	Weight int
	// Tags and Meta are the service's tags and metadata, as registered.
	Tags []string
	Meta map[string]string
}

// HostPort returns Address:Port, with brackets around an IPv6 address.
func (in Instance) HostPort() string {
	return net.JoinHostPort(in.Address, strconv.Itoa(in.Port))
}

// key identifies an instance across answers: service IDs are unique per node only.
func (in Instance) key() string { return in.Node + "/" + in.ID }

// equal reports whether two instances are the same in every field.
func (in Instance) equal(o Instance) bool {
	return in.ID == o.ID && in.Node == o.Node && in.Address == o.Address &&
		in.Port == o.Port && in.Weight == o.Weight &&
		slices.Equal(in.Tags, o.Tags) && maps.Equal(in.Meta, o.Meta)
}

// skipped is a health entry that was not taken as an instance, and why.
type skipped struct {
	key    string
	reason string
}

// buildInstances converts health entries into a fresh instance list sorted by ID
// then node, so that the balancer's input is stable. Entries that are not the
// service itself (connect proxies and gateways: any Kind other than typical) and
// entries without a usable address or port are left out and returned as skipped.
// With connect (entries of /v1/health/connect/:name), the service's sidecar proxies
// and its Connect-native instances are what is kept, and anything else is skipped.
func buildInstances(entries []*api.ServiceEntry, connect bool) ([]Instance, []skipped) {
	out := make([]Instance, 0, len(entries))
	var skips []skipped
	for _, e := range entries {
		if e == nil || e.Service == nil {
			continue
		}
		s := e.Service
		node, nodeAddr := "", ""
		if e.Node != nil {
			node, nodeAddr = e.Node.Node, e.Node.Address
		}
		in := Instance{ID: s.ID, Node: node, Address: s.Address, Port: s.Port, Weight: s.Weights.Passing}
		if in.Address == "" {
			in.Address = nodeAddr
		}
		switch {
		case connect && !meshEntry(s):
			skips = append(skips, skipped{in.key(), "kind " + string(s.Kind) + " is neither a sidecar proxy nor Connect-native"})
			continue
		case !connect && s.Kind != api.ServiceKindTypical:
			skips = append(skips, skipped{in.key(), "kind " + string(s.Kind) + " is not the service itself"})
			continue
		case !usableAddress(in.Address):
			skips = append(skips, skipped{in.key(), "no usable address (service and node address empty or unspecified)"})
			continue
		case in.Port <= 0 || in.Port > 65535:
			skips = append(skips, skipped{in.key(), "no usable port (" + strconv.Itoa(in.Port) + ")"})
			continue
		}
		if in.Weight < 1 {
			in.Weight = 1
		}
		in.Tags = slices.Clone(s.Tags)
		in.Meta = maps.Clone(s.Meta)
		out = append(out, in)
	}
	slices.SortFunc(out, compareInstances)
	return out, skips
}

// meshEntry reports whether a Connect health entry is something that accepts mesh
// connections for the service: its sidecar proxy, or a Connect-native instance.
func meshEntry(s *api.AgentService) bool {
	switch s.Kind {
	case api.ServiceKindConnectProxy:
		return true
	case api.ServiceKindTypical:
		return s.Connect != nil && s.Connect.Native
	}
	return false
}

// usableAddress reports whether addr can be dialled: not empty, and not the
// unspecified address (0.0.0.0 or ::), which an instance sometimes registers by
// mistake when it listens on every interface. Host names are accepted.
func usableAddress(addr string) bool {
	if addr == "" {
		return false
	}
	if ip, err := netip.ParseAddr(addr); err == nil && ip.IsUnspecified() {
		return false
	}
	return true
}

// equalInstances reports whether two sorted lists are the same.
func equalInstances(a, b []Instance) bool {
	return slices.EqualFunc(a, b, Instance.equal)
}

// compareInstances orders instances by ID, then node: the order of every list
// this package hands out.
func compareInstances(a, b Instance) int {
	return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Node, b.Node))
}

// diffInstances returns the instances of next that are not in prev and those of
// prev that are not in next, by ID and node. Both lists must be sorted.
func diffInstances(prev, next []Instance) (added, removed []Instance) {
	i, j := 0, 0
	for i < len(prev) || j < len(next) {
		switch {
		case i == len(prev):
			added = append(added, next[j])
			j++
		case j == len(next):
			removed = append(removed, prev[i])
			i++
		default:
			switch c := compareInstances(prev[i], next[j]); {
			case c < 0:
				removed = append(removed, prev[i])
				i++
			case c > 0:
				added = append(added, next[j])
				j++
			default:
				i++
				j++
			}
		}
	}
	return added, removed
}
