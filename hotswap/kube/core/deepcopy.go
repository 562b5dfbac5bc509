package core

import (
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/runtime"
)

// Deep copies, written by hand (the types are small): informer caches hand
// out shared objects, and runtime.Object requires DeepCopyObject.

// DeepCopy returns a copy of p that shares nothing with it.
func (p *Pod) DeepCopy() *Pod {
	if p == nil {
		return nil
	}
	out := &Pod{TypeMeta: p.TypeMeta, Spec: p.Spec}
	p.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.Status.Phase = p.Status.Phase
	out.Status.Conditions = slices.Clone(p.Status.Conditions)
	out.Status.ContainerStatuses = slices.Clone(p.Status.ContainerStatuses)
	for i, cs := range out.Status.ContainerStatuses {
		if t := cs.LastTerminationState.Terminated; t != nil {
			c := *t
			out.Status.ContainerStatuses[i].LastTerminationState.Terminated = &c
		}
	}
	return out
}

// DeepCopyObject implements runtime.Object.
func (p *Pod) DeepCopyObject() runtime.Object { return p.DeepCopy() }

// DeepCopyObject implements runtime.Object.
func (l *PodList) DeepCopyObject() runtime.Object {
	if l == nil {
		return nil
	}
	out := &PodList{TypeMeta: l.TypeMeta}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	if l.Items != nil {
		out.Items = make([]Pod, len(l.Items))
		for i := range l.Items {
			out.Items[i] = *l.Items[i].DeepCopy()
		}
	}
	return out
}

// DeepCopy returns a copy of c that shares nothing with it.
func (c *ConfigMap) DeepCopy() *ConfigMap {
	if c == nil {
		return nil
	}
	out := &ConfigMap{TypeMeta: c.TypeMeta, Data: maps.Clone(c.Data)}
	c.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	if c.Immutable != nil {
		b := *c.Immutable
		out.Immutable = &b
	}
	if c.BinaryData != nil {
		out.BinaryData = make(map[string][]byte, len(c.BinaryData))
		for k, v := range c.BinaryData {
			out.BinaryData[k] = slices.Clone(v)
		}
	}
	return out
}

// DeepCopyObject implements runtime.Object.
func (c *ConfigMap) DeepCopyObject() runtime.Object { return c.DeepCopy() }

// DeepCopyObject implements runtime.Object.
func (l *ConfigMapList) DeepCopyObject() runtime.Object {
	if l == nil {
		return nil
	}
	out := &ConfigMapList{TypeMeta: l.TypeMeta}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	if l.Items != nil {
		out.Items = make([]ConfigMap, len(l.Items))
		for i := range l.Items {
			out.Items[i] = *l.Items[i].DeepCopy()
		}
	}
	return out
}

// DeepCopy returns a copy of e that shares nothing with it.
func (e *Event) DeepCopy() *Event {
	if e == nil {
		return nil
	}
	out := *e
	e.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	e.EventTime.DeepCopyInto(&out.EventTime)
	if e.Series != nil {
		s := *e.Series
		out.Series = &s
	}
	if e.Related != nil {
		r := *e.Related
		out.Related = &r
	}
	return &out
}

// DeepCopyObject implements runtime.Object.
func (e *Event) DeepCopyObject() runtime.Object { return e.DeepCopy() }

// DeepCopyObject implements runtime.Object.
func (l *EventList) DeepCopyObject() runtime.Object {
	if l == nil {
		return nil
	}
	out := &EventList{TypeMeta: l.TypeMeta}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	if l.Items != nil {
		out.Items = make([]Event, len(l.Items))
		for i := range l.Items {
			out.Items[i] = *l.Items[i].DeepCopy()
		}
	}
	return out
}
