package kube

import (
	"context"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// eventSink is record.EventSink on the core/v1 REST client: what the typed
// clientset's EventSinkImpl does, without linking the typed clientset.
//
// Its errors are returned unwrapped, unlike everywhere else in hotswap: the
// recorder decides whether to retry by the error's type (*errors.StatusError:
// the server answered, retrying will not help), and a wrapped error would
// make it retry a Forbidden twelve times.
type eventSink struct {
	client  rest.Interface
	timeout time.Duration
	sent    *atomic.Uint64 // requests that succeeded
	errs    *atomic.Uint64 // requests that failed
}

func (s *eventSink) count(err error) {
	if err != nil {
		s.errs.Add(1)
	} else {
		s.sent.Add(1)
	}
}

// Create posts a new event.
func (s *eventSink) Create(e *corev1.Event) (*corev1.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	out := &corev1.Event{}
	err := s.client.Post().Namespace(e.Namespace).Resource("events").Body(e).Do(ctx).Into(out)
	s.count(err)
	if err != nil {
		return nil, err // unwrapped: see eventSink
	}
	return out, nil
}

// Update replaces an event.
func (s *eventSink) Update(e *corev1.Event) (*corev1.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	out := &corev1.Event{}
	err := s.client.Put().Namespace(e.Namespace).Resource("events").Name(e.Name).Body(e).Do(ctx).Into(out)
	s.count(err)
	if err != nil {
		return nil, err // unwrapped: see eventSink
	}
	return out, nil
}

// Patch patches an event (the correlator bumps the count of a repeated one).
func (s *eventSink) Patch(e *corev1.Event, data []byte) (*corev1.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	out := &corev1.Event{}
	err := s.client.Patch(types.StrategicMergePatchType).Namespace(e.Namespace).Resource("events").Name(e.Name).
		Body(data).Do(ctx).Into(out)
	s.count(err)
	if err != nil {
		return nil, err // unwrapped: see eventSink
	}
	return out, nil
}
