package main

import (
	"context"
	"log/slog"
)

// componentHandler keeps exactly one "component" attribute on every record:
// a subsystem's log.With("component", "kube") replaces the root's
// "hotswap" instead of adding a second key (slog would print both, and a
// JSON consumer sees a duplicate key).
type componentHandler struct {
	next      slog.Handler // never carries a component attribute
	component string
}

func withComponent(h slog.Handler, component string) slog.Handler {
	return &componentHandler{next: h, component: component}
}

func (h *componentHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *componentHandler) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(slog.String("component", h.component))
	return h.next.Handle(ctx, r)
}

func (h *componentHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := h.component
	rest := make([]slog.Attr, 0, len(attrs))
	for _, a := range attrs {
		if a.Key == "component" {
			c = a.Value.String()
			continue
		}
		rest = append(rest, a)
	}
	return &componentHandler{next: h.next.WithAttrs(rest), component: c}
}

func (h *componentHandler) WithGroup(name string) slog.Handler {
	return &componentHandler{next: h.next.WithGroup(name), component: h.component}
}
