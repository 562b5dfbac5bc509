package core_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/hotswap-dev/hotswap/hotswap/kube/core"
)

var (
	t0   = metav1.NewTime(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	meta = metav1.ObjectMeta{Name: "n", Namespace: "ns", UID: "u", ResourceVersion: "7", CreationTimestamp: t0,
		Labels: map[string]string{"l": "1"}, Annotations: map[string]string{"a": "1"}}
)

// sameJSON compares what goes over the wire (times decode in time.Local,
// so the structs themselves differ).
func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(ja) == string(jb)
}

// roundTrip decodes the JSON of in (a k8s.io/api object) into mid (ours),
// encodes mid and decodes that into out (k8s.io/api again).
func roundTrip(t *testing.T, in, mid, out any) {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, mid); err != nil {
		t.Fatal(err)
	}
	if b, err = json.Marshal(mid); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
}

// A ConfigMap and an Event go back to the apiserver: every field of the
// real type must survive a trip through ours.
func TestWrittenTypesKeepEveryField(t *testing.T) {
	yes := true
	cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"}, ObjectMeta: meta, Immutable: &yes,
		Data: map[string]string{"k": "v"}, BinaryData: map[string][]byte{"b": {0, 1, 2}}}
	var gotCM corev1.ConfigMap
	roundTrip(t, cm, &core.ConfigMap{}, &gotCM)
	if !sameJSON(t, cm, &gotCM) {
		t.Errorf("ConfigMap changed on the way through core.ConfigMap:\n%+v\n%+v", cm, &gotCM)
	}
	related := corev1.ObjectReference{Kind: "Node", Name: "x"}
	ev := &corev1.Event{ObjectMeta: meta, InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: "p", UID: "u",
		APIVersion: "v1", ResourceVersion: "3", FieldPath: "spec"}, Reason: "R", Message: "M",
		Source: corev1.EventSource{Component: "c", Host: "h"}, FirstTimestamp: t0, LastTimestamp: t0, Count: 2, Type: "Warning",
		EventTime: metav1.NewMicroTime(t0.Time), Series: &corev1.EventSeries{Count: 3, LastObservedTime: metav1.NewMicroTime(t0.Time)},
		Action: "A", Related: &related, ReportingController: "rc", ReportingInstance: "ri"}
	var gotEv corev1.Event
	roundTrip(t, ev, &core.Event{}, &gotEv)
	if !sameJSON(t, ev, &gotEv) {
		t.Errorf("Event changed on the way through core.Event:\n%+v\n%+v", ev, &gotEv)
	}
	// The field counts pin the check above to today's k8s.io/api: a new
	// field there must be added here and to core.
	for _, c := range []struct {
		typ  reflect.Type
		want int
	}{{reflect.TypeFor[corev1.ConfigMap](), 5}, {reflect.TypeFor[corev1.Event](), 16}} {
		if n := c.typ.NumField(); n != c.want {
			t.Errorf("%s has %d fields, core knows %d: add the new ones to package core", c.typ, n, c.want)
		}
	}
}

// A Pod is only read: the fields the driver reads decode as in k8s.io/api.
func TestPodReadsTheSameFields(t *testing.T) {
	del := metav1.NewTime(t0.Add(time.Minute))
	m := meta
	m.DeletionTimestamp = &del
	p := &corev1.Pod{ObjectMeta: m, Spec: corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{{Name: "app"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: t0, Reason: "r", Message: "m"}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", RestartCount: 2, LastTerminationState: corev1.ContainerState{
				Terminated: &corev1.ContainerStateTerminated{ExitCode: 3, Reason: "Error", FinishedAt: t0}}}}}}
	got := &core.Pod{}
	var back corev1.Pod
	roundTrip(t, p, got, &back)
	want := &core.Pod{ObjectMeta: m, Spec: core.PodSpec{NodeName: "node1"}, Status: core.PodStatus{Phase: core.PodRunning,
		Conditions: []core.PodCondition{{Type: core.PodReady, Status: core.ConditionTrue, LastTransitionTime: t0, Reason: "r", Message: "m"}},
		ContainerStatuses: []core.ContainerStatus{{Name: "app", RestartCount: 2, LastTerminationState: core.ContainerState{
			Terminated: &core.ContainerStateTerminated{ExitCode: 3, Reason: "Error", FinishedAt: t0}}}}}}
	if !sameJSON(t, got, want) {
		t.Errorf("decoded pod\n%+v\nwant\n%+v", got, want)
	}
}

// DeepCopyObject copies: changing the copy leaves the original alone.
func TestDeepCopy(t *testing.T) {
	yes := true
	for _, o := range []runtime.Object{
		&core.Pod{ObjectMeta: meta, Status: core.PodStatus{Conditions: []core.PodCondition{{Type: "A"}},
			ContainerStatuses: []core.ContainerStatus{{LastTerminationState: core.ContainerState{Terminated: &core.ContainerStateTerminated{ExitCode: 1}}}}}},
		&core.ConfigMap{ObjectMeta: meta, Immutable: &yes, Data: map[string]string{"k": "v"}, BinaryData: map[string][]byte{"b": {1}}},
		&core.Event{ObjectMeta: meta, Series: &core.EventSeries{Count: 1}, Related: &core.ObjectReference{Name: "r"}},
		&core.PodList{Items: []core.Pod{{ObjectMeta: meta}}},
		&core.ConfigMapList{Items: []core.ConfigMap{{Data: map[string]string{"k": "v"}}}},
		&core.EventList{Items: []core.Event{{Reason: "x"}}},
	} {
		orig, _ := json.Marshal(o)
		c := o.DeepCopyObject()
		if !reflect.DeepEqual(c, o) {
			t.Errorf("%T: copy differs", o)
		}
		scribble(reflect.ValueOf(c))
		if now, _ := json.Marshal(o); string(now) != string(orig) {
			t.Errorf("%T: changing the copy changed the original:\n%s\n%s", o, orig, now)
		}
	}
}

// scribble changes every string, bool, number and map entry reachable from v.
func scribble(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			scribble(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				scribble(v.Field(i))
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			scribble(v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			if e.Kind() == reflect.Slice && e.Len() > 0 {
				e.Index(0).SetUint(99) // []byte: through the shared backing array
				continue
			}
			v.SetMapIndex(k, reflect.ValueOf("x").Convert(v.Type().Elem()))
		}
	case reflect.String:
		if v.CanSet() {
			v.SetString(v.String() + "x")
		}
	case reflect.Bool:
		if v.CanSet() {
			v.SetBool(!v.Bool())
		}
	case reflect.Int, reflect.Int32, reflect.Int64:
		if v.CanSet() {
			v.SetInt(v.Int() + 1)
		}
	}
}
