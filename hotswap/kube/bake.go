package kube

import (
	"fmt"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/bake"
)

// AnnotationBake is the pod annotation that tells how the serving
// generation's post-swap bake went (Bake as JSON): the rollout driver
// halts a rollout on a pod whose bake of the canary rolled back.
const AnnotationBake = "hotswap.dev/bake"

// The results a Bake reports (package bake's).
const (
	BakeBaking     = bake.Baking     // the bake runs
	BakeBaked      = bake.Baked      // the generation stayed healthy for the whole bake
	BakeRolledBack = bake.RolledBack // it failed during the bake; the previous release serves again
)

// The events a bake records on the pod, beside the swap events.
const (
	EventBakeStarted hotswap.EventType = "BakeStarted"
	EventBaked       hotswap.EventType = "Baked"
	EventBakeFailed  hotswap.EventType = "BakeFailed"
)

var _ bake.Reporter = (*Reporter)(nil)

// ReportBake puts the bake's result in the hotswap.dev/bake annotation and
// records it as an event on the pod. Like Observe, it never blocks.
func (r *Reporter) ReportBake(b bake.Result) {
	if !r.enabled {
		return
	}
	v := string(mustJSON(Bake{Version: b.Version, Generation: b.Generation, Result: b.Result, Reason: b.Reason, Since: b.Since.UTC()}))
	r.mu.Lock()
	r.bake = v
	st := r.last
	r.mu.Unlock()
	e := hotswap.Event{Time: time.Now(), Status: st}
	switch b.Result {
	case bake.Baking:
		e.Type, e.Message = EventBakeStarted, fmt.Sprintf("generation %d (%s): bake started", b.Generation, b.Version)
	case bake.Baked:
		e.Type, e.Message = EventBaked, fmt.Sprintf("generation %d (%s) baked: healthy since %s", b.Generation, b.Version, b.Since.UTC().Format(time.RFC3339))
	default:
		e.Type, e.Warning = EventBakeFailed, true
		e.Message = fmt.Sprintf("generation %d (%s) failed its bake, rolling back: %s", b.Generation, b.Version, b.Reason)
	}
	r.Observe(e)
}

// Bake is the JSON value of the hotswap.dev/bake annotation.
type Bake struct {
	Version    string    `json:"version"`    // the release baked
	Generation int       `json:"generation"` // its generation
	Result     string    `json:"result"`     // BakeBaking, BakeBaked or BakeRolledBack
	Reason     string    `json:"reason,omitempty"`
	Since      time.Time `json:"since"` // when the bake began
}
