package config

import (
	"errors"
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// LookupEnv reads one environment variable; os.LookupEnv is the default.
type LookupEnv func(name string) (string, bool)

// missingEnvError is env("NAME") without a default for an unset variable.
type missingEnvError struct{ name string }

func (e *missingEnvError) Error() string {
	return fmt.Sprintf("environment variable %s is not set and env(%q) has no default", e.name, e.name)
}

var errEnvArity = errors.New("takes a variable name and at most one default, as in env(\"NAME\", \"default\")")

// evalContext is what expressions in the config can use: the env() function only.
func evalContext(lookup LookupEnv) *hcl.EvalContext {
	return &hcl.EvalContext{Functions: map[string]function.Function{"env": envFunc(lookup)}}
}

// envFunc implements env("NAME") and env("NAME", "default").
func envFunc(lookup LookupEnv) function.Function {
	return function.New(&function.Spec{
		Description: "Reads an environment variable, with an optional default for when it is not set.",
		Params:      []function.Parameter{{Name: "name", Type: cty.String}},
		VarParam:    &function.Parameter{Name: "default", Type: cty.String},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if len(args) > 2 {
				return cty.NilVal, errEnvArity
			}
			name := args[0].AsString()
			if v, ok := lookup(name); ok {
				return cty.StringVal(v), nil
			}
			if len(args) == 2 {
				return args[1], nil
			}
			return cty.NilVal, &missingEnvError{name: name}
		},
	})
}
