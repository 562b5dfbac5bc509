package kube

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/rest"
)

// Mode says whether to report to Kubernetes (the --kube flag).
type Mode string

// The values of --kube.
const (
	// ModeAuto reports when running in a pod (in-cluster config found) or
	// when a kubeconfig is given, and stays off otherwise.
	ModeAuto Mode = "auto"
	// ModeOn reports or fails at start-up saying what is missing.
	ModeOn Mode = "on"
	// ModeOff never talks to the apiserver.
	ModeOff Mode = "off"
)

// ParseMode parses a --kube value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case ModeAuto, ModeOn, ModeOff:
		return m, nil
	case "":
		return ModeAuto, nil
	}
	return "", fmt.Errorf("kube: --kube=%q: want auto, on or off", s)
}

// Environment variables read when Config leaves the pod's identity empty.
// The chart sets them from the downward API (fieldRef metadata.name,
// metadata.namespace, metadata.uid).
const (
	EnvPodName      = "POD_NAME"
	EnvPodNamespace = "POD_NAMESPACE"
	EnvPodUID       = "POD_UID"
)

// namespaceFile is where the service-account volume names the pod's namespace.
const namespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Config configures a Reporter. The zero value is --kube=auto.
type Config struct {
	// Mode is --kube; empty means auto.
	Mode Mode
	// Kubeconfig is --kubeconfig, for running outside a pod. Empty means the
	// in-cluster config (or $KUBECONFIG with --kube=on outside a pod).
	Kubeconfig string
	// REST, when set, is used as is instead of Kubeconfig or the in-cluster
	// config (tests; a caller that already has one).
	REST *rest.Config
	// PodName and PodNamespace name the pod to report on; empty means
	// $POD_NAME and $POD_NAMESPACE (then the service-account namespace file).
	PodName, PodNamespace string
	// PodUID, when known (downward API $POD_UID), saves one GET at start.
	PodUID string
	// UnreadyDuringSwap sets hotswap.dev/ready False while a swap runs
	// (--unready-during-swap), for servers that cannot share a port across
	// versions.
	UnreadyDuringSwap bool
	// Component is the event source shown by kubectl; empty means "hotswap".
	Component string
	// RetryBase and RetryMax bound the exponential backoff between failed
	// patches; zero means 100 ms and 30 s.
	RetryBase, RetryMax time.Duration
	// RequestTimeout bounds one API request; zero means 10 s.
	RequestTimeout time.Duration
}

// ErrMissingPodName is returned by New when reporting is on but the pod's
// name is unknown.
var ErrMissingPodName = errors.New("kube: pod name unknown")

// resolve decides whether reporting is on and fills in the defaults. It
// returns a nil rest.Config when reporting is off.
func (c Config) resolve() (Config, *rest.Config, string, error) {
	mode := c.Mode
	if mode == "" {
		mode = ModeAuto
	}
	if _, err := ParseMode(string(mode)); err != nil {
		return c, nil, "", err
	}
	if mode == ModeOff {
		return c, nil, "off (--kube=off)", nil
	}
	rc := c.REST
	why := "on"
	if rc == nil {
		kubeconfig := c.Kubeconfig
		if kubeconfig == "" && mode == ModeOn && os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
			kubeconfig = os.Getenv("KUBECONFIG")
		}
		var err error
		rc, err = RESTConfig(kubeconfig)
		switch {
		case err != nil && mode == ModeAuto && kubeconfig == "" && errors.Is(err, rest.ErrNotInCluster):
			return c, nil, "off (not in a pod: no KUBERNETES_SERVICE_HOST; --kube=on with --kubeconfig to force)", nil
		case err != nil && errors.Is(err, rest.ErrNotInCluster):
			return c, nil, "", fmt.Errorf("kube: --kube=on but not running in a pod (KUBERNETES_SERVICE_HOST unset): "+
				"pass --kubeconfig, or --kube=auto|off: %w", err)
		case err != nil:
			return c, nil, "", err
		}
		why = "on (in-cluster)"
		if kubeconfig != "" {
			why = "on (kubeconfig " + kubeconfig + ")"
		}
	}
	if c.PodName == "" {
		c.PodName = os.Getenv(EnvPodName)
	}
	if c.PodName == "" {
		return c, nil, "", fmt.Errorf("%w: set %s from the downward API (env: - name: %s, valueFrom: {fieldRef: {fieldPath: metadata.name}}), "+
			"or run with --kube=off", ErrMissingPodName, EnvPodName, EnvPodName)
	}
	if c.PodNamespace == "" {
		c.PodNamespace = os.Getenv(EnvPodNamespace)
	}
	if c.PodNamespace == "" {
		if b, err := os.ReadFile(namespaceFile); err == nil {
			c.PodNamespace = strings.TrimSpace(string(b))
		}
	}
	if c.PodNamespace == "" {
		return c, nil, "", fmt.Errorf("kube: pod namespace unknown: set %s from the downward API (fieldPath: metadata.namespace), "+
			"or run with --kube=off", EnvPodNamespace)
	}
	if c.PodUID == "" {
		c.PodUID = os.Getenv(EnvPodUID)
	}
	if c.Component == "" {
		c.Component = "hotswap"
	}
	if c.RetryBase <= 0 {
		c.RetryBase = 100 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 30 * time.Second
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 10 * time.Second
	}
	return c, rc, why, nil
}
