package kube_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/kube"
)

func TestModeResolution(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	t.Setenv("KUBECONFIG", "")
	t.Setenv(kube.EnvPodName, "")
	t.Setenv(kube.EnvPodNamespace, "")
	for _, tc := range []struct {
		name    string
		cfg     kube.Config
		env     map[string]string
		enabled bool
		errHas  string // empty: no error
	}{
		{name: "off", cfg: kube.Config{Mode: kube.ModeOff}},
		{name: "auto outside a pod is off", cfg: kube.Config{}},
		{name: "on outside a pod without kubeconfig", cfg: kube.Config{Mode: kube.ModeOn}, errHas: "--kubeconfig"},
		{name: "kubeconfig without POD_NAME", cfg: kube.Config{Kubeconfig: "@"}, errHas: "POD_NAME"},
		{name: "kubeconfig without namespace", cfg: kube.Config{Kubeconfig: "@", PodName: "p"}, errHas: "POD_NAMESPACE"},
		{name: "kubeconfig and downward API env", cfg: kube.Config{Kubeconfig: "@"},
			env: map[string]string{kube.EnvPodName: "p", kube.EnvPodNamespace: "ns"}, enabled: true},
		{name: "on with $KUBECONFIG", cfg: kube.Config{Mode: kube.ModeOn, PodName: "p", PodNamespace: "ns"},
			env: map[string]string{"KUBECONFIG": "@"}, enabled: true},
		{name: "bad kubeconfig path", cfg: kube.Config{Kubeconfig: "/nonexistent/kubeconfig", PodName: "p", PodNamespace: "ns"},
			errHas: "/nonexistent/kubeconfig"},
		{name: "bad mode", cfg: kube.Config{Mode: "maybe"}, errHas: "want auto, on or off"},
		// A pod with automountServiceAccountToken: false: auto must serve on.
		{name: "auto in a pod without a token is off", cfg: kube.Config{},
			env: map[string]string{"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}},
		{name: "on in a pod without a token fails", cfg: kube.Config{Mode: kube.ModeOn},
			env: map[string]string{"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}, errHas: "token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cfg.Kubeconfig == "@" {
				tc.cfg.Kubeconfig = cluster.KubeconfigPath
			}
			for k, v := range tc.env {
				if v == "@" {
					v = cluster.KubeconfigPath
				}
				t.Setenv(k, v)
			}
			r, err := kube.New(tc.cfg, nil)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Enabled() != tc.enabled {
				t.Fatalf("Enabled() = %v, want %v", r.Enabled(), tc.enabled)
			}
			if !tc.enabled {
				r.Observe(hotswap.Event{Type: hotswap.SwapStarted}) // a disabled reporter ignores events
				if err := r.Run(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	_, err := kube.New(kube.Config{Kubeconfig: cluster.KubeconfigPath}, nil)
	if !errors.Is(err, kube.ErrMissingPodName) {
		t.Fatalf("err = %v, want ErrMissingPodName", err)
	}
	if m, err := kube.ParseMode(" ON "); err != nil || m != kube.ModeOn {
		t.Fatalf("ParseMode(ON) = %q, %v", m, err)
	}
}
