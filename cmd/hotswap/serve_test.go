package main

import (
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/hotswap-dev/hotswap/hotswap/exampleserver"
)

// Every option of the example server, its faults above all, is a flag of
// `hotswap serve`: a fault the CLI cannot reach cannot be used by a release
// manifest (--unhealthy-after existed in the package for the bake tests but
// no manifest could ask for it).
func TestServeHasAFlagPerOption(t *testing.T) {
	cmd := newServeCommand()
	kebab := regexp.MustCompile(`([a-z])([A-Z])`)
	typ := reflect.TypeFor[exampleserver.Options]()
	for i := range typ.NumField() {
		name := strings.ToLower(kebab.ReplaceAllString(typ.Field(i).Name, "$1-$2"))
		if cmd.Flags().Lookup(name) == nil {
			t.Errorf("exampleserver.Options.%s has no flag --%s on `hotswap serve`", typ.Field(i).Name, name)
		}
	}
}
