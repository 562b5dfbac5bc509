package main

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/hotswap-dev/hotswap/hotswap"
)

// settings gives every flag of a command its final value, flag >
// HOTSWAP_<FLAG> > config-file key > default, and remembers where each came
// from so that an error names that source.
//
// viper decides the precedence. What it cannot do is kept here, small: it
// turns a bad value into a zero instead of an error (cast), and it does not
// say which source a value came from. So each value viper picks for a flag
// not given on the command line is parsed by that flag's own parser
// (pflag.Value.Set), which writes it into the command's options struct and
// fails in the flag's own words, prefixed with the source.
type settings struct {
	fs *pflag.FlagSet
	v  *viper.Viper
}

// notSettings are flags that no environment variable or file key sets:
// --config chooses the file, and HOTSWAP_VERSION is what hotswap itself sets
// for its children (a hotswap started inside a generation must not read it
// as --version).
var notSettings = map[string]bool{"config": true, "help": true, "version": true}

// loadSettings reads the environment and the config file (--config, else
// HOTSWAP_CONFIG) into every flag of fs not given on the command line.
func loadSettings(fs *pflag.FlagSet) (*settings, error) {
	v := viper.New()
	v.SetEnvPrefix("HOTSWAP")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(fs); err != nil {
		return nil, usageErr("%v", err)
	}
	s := &settings{fs: fs, v: v}
	if path := v.GetString("config"); path != "" {
		if err := s.readFile(path); err != nil {
			return nil, err
		}
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || notSettings[f.Name] || (!s.inEnv(f.Name) && !v.InConfig(f.Name)) {
			return
		}
		if err := set(f, v.Get(f.Name)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.origin(f.Name), err))
		}
	})
	if len(errs) > 0 {
		return nil, usageErr("%v", errors.Join(errs...))
	}
	return s, nil
}

// readFile reads the YAML config file and rejects keys that name no flag,
// so a typo is an error rather than a setting silently ignored.
func (s *settings) readFile(path string) error {
	s.v.SetConfigFile(path)
	s.v.SetConfigType("yaml")
	if err := s.v.ReadInConfig(); err != nil {
		var pe *iofs.PathError
		if errors.As(err, &pe) {
			return usageErr("config file %s: %v", path, pe.Err)
		}
		return usageErr("config file %s: not valid YAML: %v", path, err)
	}
	var unknown []string
	for _, k := range s.v.AllKeys() {
		top, _, _ := strings.Cut(k, ".")
		if s.fs.Lookup(top) == nil || (top == "config" && s.v.InConfig(top)) {
			unknown = append(unknown, top)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return usageErr("config file %s: unknown key(s) %s; keys are the flag names of `hotswap run --help`", path, strings.Join(unknown, ", "))
	}
	return nil
}

// set parses a value from the environment (a string) or the file (any YAML
// scalar or list) with the flag's own parser. A list replaces the flag's
// default instead of appending to it.
func set(f *pflag.Flag, val any) error {
	if sv, ok := f.Value.(pflag.SliceValue); ok && f.Value.Type() == "stringArray" {
		// Each item whole, commas and all (a --listen-env template may
		// hold commas): a file's list item by item, a variable as one.
		var items []string
		switch x := val.(type) {
		case nil:
			return nil
		case []any:
			for _, p := range x {
				items = append(items, fmt.Sprint(p))
			}
		default:
			items = []string{fmt.Sprint(x)}
		}
		return sv.Replace(items)
	}
	var s string
	switch x := val.(type) {
	case nil:
		return nil
	case []any:
		parts := make([]string, len(x))
		for i, p := range x {
			parts[i] = fmt.Sprint(p)
		}
		s = strings.Join(parts, ",")
	case []string:
		s = strings.Join(x, ",")
	default:
		s = fmt.Sprint(x)
	}
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		var items []string
		if strings.TrimSpace(s) != "" {
			items = strings.Split(s, ",")
		}
		if err := sv.Replace(items); err != nil {
			return fmt.Errorf("value %q: %v", s, err)
		}
		return nil
	}
	if err := f.Value.Set(s); err != nil {
		return fmt.Errorf("value %q is not a valid %s: %v", s, f.Value.Type(), err)
	}
	return nil
}

// envName is the environment variable of a flag: HOTSWAP_<FLAG>, dashes as
// underscores.
func envName(flag string) string {
	return "HOTSWAP_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// inEnv is whether viper takes flag's value from the environment (it skips
// empty variables).
func (s *settings) inEnv(flag string) bool { return os.Getenv(envName(flag)) != "" }

// origin names where the value of flag came from, for an error message:
// "--flag" (also for the default), "environment variable HOTSWAP_FLAG" or
// "config file key flag".
func (s *settings) origin(flag string) string {
	if f := s.fs.Lookup(flag); f == nil || f.Changed {
		return "--" + flag
	}
	if s.inEnv(flag) {
		return "environment variable " + envName(flag)
	}
	if s.v.InConfig(flag) {
		return "config file key " + flag
	}
	return "--" + flag
}

// bad is a usage error about flag's value, naming its source.
func (s *settings) bad(flag string, err error) error {
	return usageErr("%s: %v", s.origin(flag), err)
}

// badField is a usage error for err, naming the source of the setting when
// err is a *hotswap.FieldError.
func (s *settings) badField(err error) error {
	var fe *hotswap.FieldError
	if errors.As(err, &fe) {
		return s.bad(fe.Key, fe.Err)
	}
	return usageErr("%v", err)
}
