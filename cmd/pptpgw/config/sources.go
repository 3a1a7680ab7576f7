package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

const envPrefix = "PPTPGW_"

// reservedEnvPrefixes are PPTPGW_ variables that are not configuration: test harnesses set them
// for themselves and the daemon they start inherits them.
var reservedEnvPrefixes = []string{"PPTPGW_E2E_", "PPTPGW_TEST_"}

// parseEnv returns the settings of the PPTPGW_ variables in environ that subcommand takes, in
// name order (so the first error is the same every run). A PPTPGW_ variable that names no option
// at all is an error: it is almost certainly a typo that would otherwise be silently ignored.
func parseEnv(subcommand string, environ []string) ([]setting, error) {
	vars := map[string]string{}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, envPrefix) || reserved(name) {
			continue
		}
		vars[name] = value
	}
	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	sort.Strings(names)

	var settings []setting
	for _, name := range names {
		o := envOption(name)
		switch {
		case o == nil:
			return nil, fmt.Errorf("%s: unknown variable (options are PPTPGW_ and the flag name, e.g. PPTPGW_MAX_CALLS)", name)
		case o.from&fromEnv == 0:
			return nil, fmt.Errorf("%s: --%s is a command-line flag only", name, o.name)
		case !o.takes(subcommand):
			continue
		}
		settings = append(settings, setting{opt: o, value: vars[name], src: name})
	}
	return settings, nil
}

func reserved(name string) bool {
	for _, p := range reservedEnvPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// envOption returns the option whose variable is exactly name, or nil.
func envOption(name string) *option {
	for _, o := range options {
		if envName(o.name) == name {
			return o
		}
	}
	return nil
}

// readFile returns the settings of the YAML config file at path that subcommand takes, in file
// order. The top level must be a mapping of flag names to a scalar or, for list options, a
// scalar (comma-separated) or a sequence of scalars. Unknown and duplicate keys are errors.
func readFile(subcommand, path string) ([]setting, error) {
	prefix := "config file " + path
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is already in the prefix
		}
		return nil, fmt.Errorf("%s: %w", prefix, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", prefix, err)
	}
	if doc.Kind == 0 { // empty file, or only comments
		return nil, nil
	}
	top := doc.Content[0]
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" { // "---" alone
		return nil, nil
	}
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: line %d: the top level must be a mapping of option names to values", prefix, top.Line)
	}

	var settings []setting
	seen := map[string]int{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		src := fmt.Sprintf("%s: key %q", prefix, k.Value)
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%s: line %d: keys must be option names", prefix, k.Line)
		}
		if line, dup := seen[k.Value]; dup {
			return nil, fmt.Errorf("%s: line %d: duplicate (first on line %d)", src, k.Line, line)
		}
		seen[k.Value] = k.Line
		o := lookup(k.Value)
		switch {
		case o == nil:
			return nil, fmt.Errorf("%s: unknown", src)
		case o.from&fromFile == 0:
			return nil, fmt.Errorf("%s: not allowed in a config file", src)
		case !o.takes(subcommand):
			continue
		}
		values, err := nodeValues(o, v)
		if err != nil {
			return nil, fmt.Errorf("%s: line %d: %w", src, v.Line, err)
		}
		for _, val := range values {
			settings = append(settings, setting{opt: o, value: val, src: src})
		}
	}
	return settings, nil
}

// nodeValues returns the text of a value node: one string for a scalar, one per element of a
// sequence (list options only). An empty sequence yields one "" so that it still clears the
// list.
func nodeValues(o *option, v *yaml.Node) ([]string, error) {
	if v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			return nil, errors.New("has no value")
		}
		return []string{v.Value}, nil
	case yaml.SequenceNode:
		if !o.list {
			return nil, errors.New("takes one value, not a list")
		}
		if len(v.Content) == 0 {
			return []string{""}, nil
		}
		out := make([]string, 0, len(v.Content))
		for _, e := range v.Content {
			if e.Kind != yaml.ScalarNode || e.Tag == "!!null" {
				return nil, errors.New("list elements must be plain values")
			}
			out = append(out, e.Value)
		}
		return out, nil
	default:
		return nil, errors.New("must be a value or a list, not a mapping")
	}
}
