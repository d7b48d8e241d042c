package gateway

import (
	"github.com/hashicorp/go-hclog"

	"github.com/infinityxone/gateway/gateway/config"
)

// CheckFiles reads what cfg names on disk the way New does (the listener's certificate
// and key, each jwt provider's key material) without listening, connecting or starting
// anything, so that `gateway validate` refuses what `gateway run` would. Each error
// starts with the FILE:LINE:COL of the block that names the file.
func CheckFiles(cfg *config.Config) []error {
	var errs []error
	if t := cfg.Gateway.TLS; t != nil {
		if _, err := readCertificate(t); err != nil {
			errs = append(errs, err)
		}
	}
	for _, j := range cfg.JWT {
		v, err := newVerifier(j, hclog.NewNullLogger())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		v.Stop()
	}
	return errs
}
