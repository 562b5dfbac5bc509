package admin

import (
	"context"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServerEndpoints(t *testing.T) {
	var orphans, restarts, reportErrs uint64 = 3, 1, 7
	s := New(Options{
		Addr:          "127.0.0.1:0",
		OrphansReaped: func() uint64 { return orphans },
		LiveChildren:  func() int { return 2 },
		ChildRestarts: func() uint64 { return restarts },
		ReportErrors:  func() uint64 { return reportErrs },
	}, nil)
	l, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	base := "http://" + l.Addr().String()

	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d, want 200", code)
	}
	if code, _ := get(t, base+"/readyz"); code != 503 {
		t.Fatalf("/readyz before any generation = %d, want 503", code)
	}

	t0 := time.Now()
	s.Observe(hotswap.Event{Type: hotswap.StatusChanged, Time: t0, Status: hotswap.Status{
		Phase: hotswap.PhaseServing, Generation: 1, Version: "v1",
		Generations: []hotswap.GenerationStatus{{Generation: 1, State: hotswap.GenServing}},
	}})
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz with generation 1 serving = %d, want 200", code)
	}
	swap := &hotswap.SwapResult{ID: 1, Result: hotswap.ResultSucceeded, Duration: 300 * time.Millisecond, ToGen: 2}
	drained := hotswap.Status{Phase: hotswap.PhaseServing, Generation: 2, Version: "v2", LastSwap: swap,
		Generations: []hotswap.GenerationStatus{{Generation: 1, State: hotswap.GenDraining}, {Generation: 2, State: hotswap.GenServing}}}
	s.Observe(hotswap.Event{Type: hotswap.SwapSucceeded, Time: t0.Add(time.Second), Status: drained})
	// The same result seen again (a later event) must not count twice; the
	// drain ends when generation 1 is gone.
	gone := drained
	gone.Generations = gone.Generations[1:]
	s.Observe(hotswap.Event{Type: hotswap.StatusChanged, Time: t0.Add(1500 * time.Millisecond), Status: gone})
	rej := gone
	rej.LastRejected = &hotswap.SwapResult{ID: 2, Result: hotswap.ResultRejected}
	s.Observe(hotswap.Event{Type: hotswap.ReleaseRejected, Time: t0.Add(2 * time.Second), Status: rej})

	_, metrics := get(t, base+"/metrics")
	for _, want := range []string{
		"hotswap_generation 2",
		`hotswap_swaps_total{result="succeeded"} 1`,
		`hotswap_swaps_total{result="rejected"} 1`,
		`hotswap_swaps_total{result="failed"} 0`,
		`hotswap_swap_duration_seconds_sum{result="succeeded"} 0.3`,
		"hotswap_drain_duration_seconds_sum 0.5",
		"hotswap_drain_duration_seconds_count 1",
		"hotswap_children 2",
		"hotswap_orphans_reaped_total 3",
		"hotswap_child_restarts_total 1",
		"hotswap_report_errors_total 7",
		"hotswap_ready 1",
		"go_goroutines",
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// What a Prometheus server would make of the page: its own parser, and
	// the types it would record.
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(metrics))
	if err != nil {
		t.Errorf("Prometheus' text parser rejects /metrics: %v", err)
	}
	for name, want := range map[string]dto.MetricType{
		"hotswap_generation":             dto.MetricType_GAUGE,
		"hotswap_swaps_total":            dto.MetricType_COUNTER,
		"hotswap_swap_duration_seconds":  dto.MetricType_HISTOGRAM,
		"hotswap_drain_duration_seconds": dto.MetricType_HISTOGRAM,
		"hotswap_orphans_reaped_total":   dto.MetricType_COUNTER,
		"hotswap_report_errors_total":    dto.MetricType_COUNTER,
		"process_resident_memory_bytes":  dto.MetricType_GAUGE,
	} {
		f, ok := families[name]
		if !ok {
			t.Errorf("parsed /metrics lacks the family %s", name)
			continue
		}
		if f.GetType() != want {
			t.Errorf("%s has type %v, want %v", name, f.GetType(), want)
		}
	}
	if f := families["hotswap_swap_duration_seconds"]; f != nil {
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == "succeeded" {
				// 0.3 s: in the 0.5 bucket and above, not in 0.25.
				for _, b := range m.GetHistogram().GetBucket() {
					want := uint64(0)
					if b.GetUpperBound() >= 0.5 {
						want = 1
					}
					if b.GetCumulativeCount() != want {
						t.Errorf("succeeded swap bucket le=%v = %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
					}
				}
			}
		}
	}
	if t.Failed() {
		t.Log(metrics)
	}

	s.Observe(hotswap.Event{Type: hotswap.ChildExited, Status: hotswap.Status{Phase: hotswap.PhaseFailed}})
	if code, _ := get(t, base+"/readyz"); code != 503 {
		t.Fatalf("/readyz after the serving child exited = %d, want 503", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestListenBadAddr(t *testing.T) {
	_, err := New(Options{Addr: "127.0.0.1:notaport"}, nil).Listen()
	if err == nil || !strings.Contains(err.Error(), "--admin-addr") {
		t.Fatalf("err = %v, want one naming --admin-addr", err)
	}
}

// Observe runs on the engine's goroutine: it must stay cheap.
func BenchmarkObserve(b *testing.B) {
	s := New(Options{}, nil)
	e := hotswap.Event{Type: hotswap.SwapSucceeded, Status: hotswap.Status{Phase: hotswap.PhaseServing, Generation: 2,
		LastSwap:    &hotswap.SwapResult{ID: 1, Result: hotswap.ResultSucceeded},
		Generations: []hotswap.GenerationStatus{{Generation: 2, State: hotswap.GenServing}}}}
	for b.Loop() {
		s.Observe(e)
	}
}
