package kube

import "time"

// AnnotationBake is the pod annotation that tells how the serving
// generation's post-swap bake went (Bake as JSON): the rollout driver
// halts a rollout on a pod whose bake of the canary rolled back.
const AnnotationBake = "hotswap.dev/bake"

// The results a Bake reports.
const (
	BakeBaking     = "baking"      // the bake runs
	BakeBaked      = "baked"       // the generation stayed healthy for the whole bake
	BakeRolledBack = "rolled-back" // it failed during the bake; the previous release serves again
)

// Bake is the JSON value of the hotswap.dev/bake annotation.
type Bake struct {
	Version    string    `json:"version"`    // the release baked
	Generation int       `json:"generation"` // its generation
	Result     string    `json:"result"`     // BakeBaking, BakeBaked or BakeRolledBack
	Reason     string    `json:"reason,omitempty"`
	Since      time.Time `json:"since"` // when the bake began
}
