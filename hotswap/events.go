package hotswap

import (
	"encoding/json"
	"fmt"
	"time"
)

// EventType names what happened to the pod's serving process. The names are
// also the Kubernetes event reasons, so they read well in `kubectl describe`.
type EventType string

// The events the engine emits, in the order a swap produces them.
const (
	// SwapStarted: a trigger was accepted and a release is being started.
	SwapStarted EventType = "SwapStarted"
	// SwapSucceeded: the new generation is ready and serving; the old one drains.
	SwapSucceeded EventType = "SwapSucceeded"
	// SwapFailed: the new generation exited or timed out before it was ready;
	// the old generation keeps serving (rollback).
	SwapFailed EventType = "SwapFailed"
	// ReleaseRejected: verification refused a release before anything started.
	ReleaseRejected EventType = "ReleaseRejected"
	// ChildExited: a serving generation exited on its own (not during a swap).
	ChildExited EventType = "ChildExited"
	// StatusChanged: the status changed without being one of the above
	// (first generation ready, drain finished, shutdown started).
	StatusChanged EventType = "StatusChanged"
)

// Phase is the state of the pod's serving process as a whole.
type Phase string

// The phases, as reported in the hotswap.dev/phase annotation.
const (
	PhaseStarting Phase = "Starting" // the first generation is not ready yet
	PhaseServing  Phase = "Serving"  // a generation serves, no swap runs
	PhaseSwapping Phase = "Swapping" // a new generation is starting beside the serving one
	PhaseStopping Phase = "Stopping" // hotswap is shutting down
	PhaseFailed   Phase = "Failed"   // nothing serves (the serving child exited)
)

// Result is the outcome of one swap attempt.
type Result string

// The outcomes of a swap.
const (
	ResultSucceeded Result = "succeeded"
	ResultFailed    Result = "failed"   // new generation died or was not ready in time; old kept
	ResultRejected  Result = "rejected" // release refused by verification; nothing started
	ResultCanceled  Result = "canceled" // shutdown began while the swap ran
)

// SwapResult describes one finished swap attempt.
type SwapResult struct {
	ID          uint64        `json:"id"`
	Trigger     string        `json:"trigger"` // "signal", "control", "source:<name>", "initial"
	Started     time.Time     `json:"started"`
	Duration    time.Duration `json:"duration"` // trigger accepted → new ready (or failure)
	Result      Result        `json:"result"`
	Reason      string        `json:"reason,omitempty"`
	FromVersion string        `json:"fromVersion,omitempty"`
	ToVersion   string        `json:"toVersion,omitempty"`
	FromGen     int           `json:"fromGeneration,omitempty"`
	ToGen       int           `json:"toGeneration,omitempty"`
}

// swapResultJSON is SwapResult on the wire: its duration as a Go duration
// string ("1.204s"), the convention of the logs and the kube annotations,
// not nanoseconds.
type swapResultJSON struct {
	swapResultFields
	Duration string `json:"duration"`
}

type swapResultFields SwapResult // without the methods, so no recursion

// MarshalJSON writes Duration as a Go duration string.
func (r SwapResult) MarshalJSON() ([]byte, error) {
	return json.Marshal(swapResultJSON{swapResultFields(r), r.Duration.String()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *SwapResult) UnmarshalJSON(b []byte) error {
	var w swapResultJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*r = SwapResult(w.swapResultFields)
	if w.Duration != "" {
		d, err := time.ParseDuration(w.Duration)
		if err != nil {
			return fmt.Errorf("swap result duration: %w", err)
		}
		r.Duration = d
	}
	return nil
}

// GenerationStatus is one live generation as `hotswap status` shows it.
type GenerationStatus struct {
	Generation int       `json:"generation"`
	Version    string    `json:"version"`
	Path       string    `json:"path"` // the executable it runs
	PID        int       `json:"pid"`
	State      GenState  `json:"state"`
	Started    time.Time `json:"started"`
	// WaitingFor names the readiness check a starting generation waits for
	// ("READY=1 on NOTIFY_SOCKET", "http=..."); empty once it is ready.
	WaitingFor string `json:"waitingFor,omitempty"`
	Status     string `json:"status,omitempty"` // last STATUS= sent over sd_notify
}

// SwapCounts counts finished swap attempts by outcome since hotswap started.
type SwapCounts struct {
	Succeeded uint64 `json:"succeeded"`
	Failed    uint64 `json:"failed"`
	Rejected  uint64 `json:"rejected"` // also releases a source refused before offering them
	Canceled  uint64 `json:"canceled"`
}

// Status is a snapshot of the engine. It is a value: observers may keep it.
type Status struct {
	Phase       Phase              `json:"phase"`
	Generation  int                `json:"generation"` // serving generation, 0 when none
	Version     string             `json:"version"`
	PID         int                `json:"pid"`
	Generations []GenerationStatus `json:"generations"`
	LastSwap    *SwapResult        `json:"lastSwap,omitempty"`
	// LastRejected is the last release a source offered that was refused,
	// so an operator sees why an update did not happen. A later successful
	// swap clears it: it no longer explains anything.
	LastRejected *SwapResult `json:"lastRejected,omitempty"`
	Swaps        uint64      `json:"swaps"` // attempts so far
	Counts       SwapCounts  `json:"counts"`
	// Hotswap is the running hotswap's own version; Upgrades how many times
	// hotswap replaced itself in place in this pod (docs/upgrade.md).
	Hotswap  string `json:"hotswap,omitempty"`
	Upgrades int    `json:"upgrades,omitempty"`
	// ExecShim is how generations start: ExecShimTiny, or ExecShimReexec
	// where the tiny shim cannot run (the start log says why).
	ExecShim string `json:"execShim,omitempty"`
}

// Event is one thing that happened, with the status right after it.
type Event struct {
	Type    EventType `json:"type"`
	Time    time.Time `json:"time"`
	Message string    `json:"message"`
	// Warning is true for events an operator should look at
	// (SwapFailed, ReleaseRejected, ChildExited with a non-zero code).
	Warning bool   `json:"warning"`
	Status  Status `json:"status"`
}

// Observer receives every event. Observe is called from the engine's
// goroutine and must never block: reporters queue and coalesce on their own.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

// Observe calls f(e).
func (f ObserverFunc) Observe(e Event) { f(e) }

// GenState is where one generation is in its life. A generation moves only
// forward: Starting → Serving → Draining → Exited, or Starting → Failed.
type GenState string

// The states of a generation.
const (
	GenStarting GenState = "starting" // started, not ready yet
	GenServing  GenState = "serving"  // ready; the one that gets forwarded signals
	GenDraining GenState = "draining" // got the stop signal, finishing in-flight work
	GenExited   GenState = "exited"   // gone after serving or draining
	GenFailed   GenState = "failed"   // exited or killed before it was ready
)
