package rollout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/hotswap-dev/hotswap/hotswap/fleet"
)

// analyse runs the analysis command for the step r is at, if there is one:
// exit 0 passes the step. The command comes from the driver's options only,
// never from the ConfigMap.
func (d *Driver) analyse(ctx context.Context, r *fleet.Rollout, canary []Pod) error {
	if d.opts.Analysis == "" {
		return nil
	}
	names := make([]string, len(canary))
	for i, p := range canary {
		names[i] = p.Name
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.AnalysisTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", d.opts.Analysis)
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("HOTSWAP_ROLLOUT_STEP=%d", r.Step+1),
		"HOTSWAP_ROLLOUT_STEP_NAME="+r.Steps[r.Step].String(),
		"HOTSWAP_ROLLOUT_CANARY_VERSION="+r.CanaryVersion,
		"HOTSWAP_ROLLOUT_STABLE_VERSION="+r.StableVersion,
		"HOTSWAP_ROLLOUT_PODS="+strings.Join(names, " "),
		"HOTSWAP_ROLLOUT_NAMESPACE="+d.opts.Namespace,
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	tail := strings.TrimSpace(out.String())
	if len(tail) > 400 {
		tail = "..." + tail[len(tail)-400:]
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%q did not finish within %s: %s", d.opts.Analysis, d.opts.AnalysisTimeout, tail)
	case err != nil:
		return fmt.Errorf("%q failed (%v): %s", d.opts.Analysis, err, tail)
	}
	d.log.Info("analysis passed", "step", d.stepName(r), "output", tail)
	return nil
}
