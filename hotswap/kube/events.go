package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/hotswap-dev/hotswap/hotswap/kube/core"
)

// eventWriter posts the pod's events: what client-go's tools/record does for
// a controller, cut to the one object and the few events a hotswap makes.
// tools/record is not used because it links the strategic-merge-patch
// machinery (kube-openapi, gnostic, protobuf descriptors: 0.3 MB and their
// package init) and needs k8s.io/api/core/v1 (docs/perf-footprint.md).
//
// Kept from tools/record, with its defaults:
//   - a repeat of an event (same type, reason and message) patches the count
//     and lastTimestamp of the first instead of creating another (its
//     correlator); an expired one is created again;
//   - a spam filter: a burst of 25 events, then one per 5 minutes;
//   - up to 12 tries per event while the apiserver cannot be reached; an
//     answer (Forbidden, Invalid, ...) is final, as retrying will not help.
//
// Left out: the aggregation of 10 similar events into one "combined"
// event (hotswap's messages name the swap, so they would merge distinct
// swaps) and the broadcaster (there is one sink).
type eventWriter struct {
	client              rest.Interface
	timeout             time.Duration
	source              core.EventSource
	retryBase, retryMax time.Duration
	limit               *rate.Limiter
	seen                map[eventKey]*core.Event // last instance of each event, for counting repeats

	sent, errs, dropped *atomic.Uint64
}

// eventKey is what makes two events the same event (record's correlator key,
// less the source and object, which are fixed here).
type eventKey struct{ typ, reason, message string }

// Limits from tools/record's defaults.
const (
	eventBurst       = 25
	eventRefill      = 5 * time.Minute
	eventTries       = 12
	eventSeenEntries = 4096
)

func newEventWriter(client rest.Interface, cfg Config, sent, errs, dropped *atomic.Uint64) *eventWriter {
	return &eventWriter{
		client: client, timeout: cfg.RequestTimeout, source: core.EventSource{Component: cfg.Component},
		retryBase: cfg.RetryBase, retryMax: cfg.RetryMax,
		limit: rate.NewLimiter(rate.Every(eventRefill), eventBurst),
		seen:  map[eventKey]*core.Event{},
		sent:  sent, errs: errs, dropped: dropped,
	}
}

// write records one event about ref; it returns when the event is sent,
// refused, dropped by the spam filter, or ctx ends.
func (w *eventWriter) write(ctx context.Context, ref core.ObjectReference, typ, reason, message string, at time.Time) {
	if !w.limit.Allow() {
		w.dropped.Add(1)
		return
	}
	k := eventKey{typ, reason, message}
	now := metav1.NewTime(at)
	if prev := w.seen[k]; prev != nil && prev.InvolvedObject.UID == ref.UID {
		patch, _ := json.Marshal(map[string]any{"count": prev.Count + 1, "lastTimestamp": now})
		out, err := w.try(ctx, func(ctx context.Context, out *core.Event) error {
			return w.client.Patch(types.MergePatchType).Namespace(prev.Namespace).Resource("events").Name(prev.Name).
				Body(patch).Do(ctx).Into(out)
		})
		if err == nil {
			w.seen[k] = out
			return
		}
		if !apierrors.IsNotFound(err) {
			return
		}
		// Expired (events live an hour): record it anew.
	}
	if len(w.seen) >= eventSeenEntries {
		clear(w.seen)
	}
	ev := &core.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", ref.Name, at.UnixNano()), Namespace: ref.Namespace},
		InvolvedObject: ref, Reason: reason, Message: message, Type: typ,
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		Source: w.source, ReportingController: w.source.Component, ReportingInstance: w.source.Host,
	}
	out, err := w.try(ctx, func(ctx context.Context, out *core.Event) error {
		return w.client.Post().Namespace(ev.Namespace).Resource("events").Body(ev).Do(ctx).Into(out)
	})
	if err == nil {
		w.seen[k] = out
	}
}

// try runs req until it succeeds, the apiserver answers with an error, or
// eventTries attempts failed to reach it; every failed request is counted.
func (w *eventWriter) try(ctx context.Context, req func(context.Context, *core.Event) error) (*core.Event, error) {
	backoff := w.retryBase
	for n := 1; ; n++ {
		out := &core.Event{}
		rctx, cancel := context.WithTimeout(ctx, w.timeout)
		err := req(rctx, out)
		cancel()
		if err == nil {
			w.sent.Add(1)
			return out, nil
		}
		w.errs.Add(1)
		if _, answered := err.(apierrors.APIStatus); answered || n == eventTries || ctx.Err() != nil {
			return nil, fmt.Errorf("kube: event: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("kube: event: %w", err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, w.retryMax)
	}
}
