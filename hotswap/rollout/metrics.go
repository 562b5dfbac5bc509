package rollout

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hotswap-dev/hotswap/hotswap/fleet"
)

// Metrics counts what a Driver did; WriteMetrics exports it.
type Metrics struct {
	Reads, Writes, Conflicts, PodLists, APIErrors, Events atomic.Uint64
	// Steps baked and passed, Halts (automatic rollbacks), Promotions.
	Steps, Halts, Promotions atomic.Uint64

	mu   sync.Mutex
	last fleet.Rollout // as last read
}

func (m *Metrics) observe(r *fleet.Rollout) {
	m.mu.Lock()
	m.last = *r
	m.mu.Unlock()
}

// Metrics returns the driver's counters.
func (d *Driver) Metrics() *Metrics { return &d.metrics }

// WriteMetrics writes the counters and the rollout's phase and step in the
// Prometheus text format.
func (m *Metrics) WriteMetrics(w io.Writer) error {
	m.mu.Lock()
	last := m.last
	m.mu.Unlock()
	var err error
	p := func(format string, a ...any) {
		if err == nil {
			_, err = fmt.Fprintf(w, format, a...)
		}
	}
	for _, c := range []struct {
		name, help string
		v          *atomic.Uint64
	}{
		{"configmap_reads_total", "reads of the release ConfigMap", &m.Reads},
		{"configmap_writes_total", "writes of the release ConfigMap (each is one watch event per pod)", &m.Writes},
		{"configmap_conflicts_total", "writes refused because another writer came first", &m.Conflicts},
		{"pod_lists_total", "lists of the target's pods", &m.PodLists},
		{"api_errors_total", "failed apiserver requests", &m.APIErrors},
		{"events_total", "events recorded on the ConfigMap", &m.Events},
		{"steps_total", "steps baked and passed", &m.Steps},
		{"halts_total", "rollouts halted and rolled back on a bad sign", &m.Halts},
		{"promotions_total", "canaries promoted to stable", &m.Promotions},
	} {
		p("# HELP hotswap_rollout_%s %s\n# TYPE hotswap_rollout_%s counter\nhotswap_rollout_%s %d\n", c.name, c.help, c.name, c.name, c.v.Load())
	}
	p("# HELP hotswap_rollout_phase the rollout's phase (1 for the current one)\n# TYPE hotswap_rollout_phase gauge\n")
	for _, ph := range []fleet.Phase{fleet.Progressing, fleet.Paused, fleet.Completed, fleet.Promoted, fleet.RolledBack, fleet.Aborted} {
		v := 0
		if last.Phase == ph {
			v = 1
		}
		p("hotswap_rollout_phase{phase=%q,canary=%q} %d\n", ph, last.CanaryVersion, v)
	}
	p("# HELP hotswap_rollout_step the current step, from 1\n# TYPE hotswap_rollout_step gauge\nhotswap_rollout_step %d\n", last.Step+1)
	return err
}
