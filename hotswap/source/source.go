package source

import (
	"github.com/hotswap-dev/hotswap/hotswap"
)

// Offerer takes the releases a source finds; *hotswap.Engine is one. Offer
// must not wait for the swap: the engine dedupes against the serving, queued
// and last failed release, and coalesces.
type Offerer interface {
	Offer(hotswap.Release)
}

// OffererFunc adapts a function to Offerer.
type OffererFunc func(hotswap.Release)

// Offer calls f(r).
func (f OffererFunc) Offer(r hotswap.Release) { f(r) }

// Rejecter is implemented by an Offerer that also wants to hear about
// releases a source refused before offering them (a manifest that does not
// parse), so the refusal shows in `hotswap status` and as an event.
// *hotswap.Engine is one.
type Rejecter interface {
	Reject(source, reason string)
}
