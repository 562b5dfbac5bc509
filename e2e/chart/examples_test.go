package chart

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// Every values file under charts/hotswap/examples (the recipes of
// docs/servers.md) lints, renders, and passes hotswap only flags the binary
// has: an example that no longer installs fails here, not for a reader.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(chartDir(), "examples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples under %s: %v", filepath.Join(chartDir(), "examples"), err)
	}
	flags, _ := hotswapFlags(t)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out, err := helm(t, append([]string{"lint", "--strict", chartDir(), "--namespace", namespace}, valuesFile(t, string(b))...)...)
			if err != nil || !strings.Contains(out, "0 chart(s) failed") {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
			dep := typed[appsv1.Deployment](t, render(t, string(b)), "Deployment")
			if dep == nil {
				t.Fatal("no Deployment rendered")
			}
			args := dep.Spec.Template.Spec.Containers[0].Args
			sep := slices.Index(args, "--")
			if sep < 0 {
				t.Fatalf("args lack `-- COMMAND`: %q", args)
			}
			for _, a := range args[1:sep] {
				name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
				if !flags[name] {
					t.Errorf("the example passes --%s, which `hotswap flags-doc` does not list", name)
				}
			}
		})
	}
}
