package config

import (
	"cmp"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Load reads a config FILE, or every *.hcl file directly inside a DIR (in name order,
// merged as one config), with env() reading the process environment. It returns the
// validated config, or nil and the diagnostics sorted by position.
func Load(path string) (*Config, Diagnostics) { return LoadWithEnv(path, os.LookupEnv) }

// LoadWithEnv is Load with env() reading lookup instead of the process environment.
func LoadWithEnv(path string, lookup LookupEnv) (*Config, Diagnostics) {
	files, ds := readFiles(path)
	if len(ds) > 0 {
		return nil, ds
	}
	return ParseWithEnv(files, lookup)
}

// readFiles returns path's source, or the sources of the *.hcl files in directory path.
func readFiles(path string) (map[string][]byte, Diagnostics) {
	fail := func(msg string) (map[string][]byte, Diagnostics) {
		return nil, Diagnostics{{Pos: Pos{File: path}, Message: msg}}
	}
	st, err := os.Stat(path)
	if err != nil {
		return fail(err.Error())
	}
	names := []string{path}
	if st.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return fail(err.Error())
		}
		names = names[:0]
		for _, e := range entries {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".hcl") {
				names = append(names, filepath.Join(path, e.Name()))
			}
		}
		if len(names) == 0 {
			return fail("no *.hcl files in this directory")
		}
	}
	files := make(map[string][]byte, len(names))
	for _, n := range names {
		src, err := os.ReadFile(n)
		if err != nil {
			return nil, Diagnostics{{Pos: Pos{File: n}, Message: err.Error()}}
		}
		files[n] = src
	}
	return files, nil
}

// Parse decodes and validates sources given as file name -> HCL text, merged in file
// name order, with env() reading the process environment. Positions in diagnostics use
// the given names.
func Parse(files map[string][]byte) (*Config, Diagnostics) { return ParseWithEnv(files, os.LookupEnv) }

// ParseWithEnv is Parse with env() reading lookup instead of the process environment.
func ParseWithEnv(files map[string][]byte, lookup LookupEnv) (*Config, Diagnostics) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	if len(names) == 0 {
		return nil, Diagnostics{{Message: "no config files"}}
	}

	d := &decoder{ctx: evalContext(lookup)}
	bodies := make([]*hclsyntax.Body, 0, len(names))
	for _, n := range names {
		f, hd := hclsyntax.ParseConfig(files[n], n, hcl.InitialPos)
		d.addHCL(hd, "")
		if f != nil {
			if b, ok := f.Body.(*hclsyntax.Body); ok {
				bodies = append(bodies, b)
			}
		}
	}
	if len(d.diags) > 0 { // decoding a broken file would only add noise
		return nil, sorted(d.diags)
	}

	p := &parsed{cfg: Config{Gateway: defaultGateway(), Admin: defaultAdmin(), Log: defaultLog()}}
	for _, b := range bodies {
		d.file(b, p)
	}
	finishDefaults(p, lookup)
	(&validator{d: d, p: p}).validate()
	if p.routeBlocks == 0 {
		d.errorf(Pos{File: names[0], Line: 1, Column: 1}, "no route block: a config needs at least one route")
	}
	if len(d.diags) > 0 {
		return nil, sorted(d.diags)
	}
	return &p.cfg, nil
}

// sorted orders diagnostics by file, line and column, keeping the order of those at
// the same position.
func sorted(ds Diagnostics) Diagnostics {
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		return cmp.Or(cmp.Compare(a.Pos.File, b.Pos.File), cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Column, b.Pos.Column))
	})
	return ds
}
