package core

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// SchemeGroupVersion is core/v1: group "", version "v1".
var SchemeGroupVersion = schema.GroupVersion{Group: "", Version: "v1"}

// AddToScheme registers Pod, ConfigMap and Event (and their lists) as the
// core/v1 kinds of the same names, with metav1's list and watch options.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion,
		&Pod{}, &PodList{}, &ConfigMap{}, &ConfigMapList{}, &Event{}, &EventList{}, &metav1.Status{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}

// Values of PodStatus.Phase, PodCondition.Status and Event.Type that
// hotswap compares with or sets.
const (
	PodRunning       = "Running"
	ConditionTrue    = "True"
	ConditionFalse   = "False"
	PodReady         = "Ready"
	EventTypeNormal  = "Normal"
	EventTypeWarning = "Warning"
)

// Pod is the part of a core/v1 Pod hotswap reads: identity, annotations,
// node, phase, conditions and container restarts. It is never written back.
type Pod struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              PodSpec   `json:"spec,omitempty"`
	Status            PodStatus `json:"status,omitempty"`
}

// PodSpec is the part of a pod's spec hotswap reads.
type PodSpec struct {
	NodeName string `json:"nodeName,omitempty"`
}

// PodStatus is the part of a pod's status hotswap reads.
type PodStatus struct {
	Phase             string            `json:"phase,omitempty"`
	Conditions        []PodCondition    `json:"conditions,omitempty"`
	ContainerStatuses []ContainerStatus `json:"containerStatuses,omitempty"`
}

// PodCondition is one of a pod's conditions.
type PodCondition struct {
	Type               string      `json:"type"`
	Status             string      `json:"status"`
	LastTransitionTime metav1.Time `json:"lastTransitionTime,omitempty"`
	Reason             string      `json:"reason,omitempty"`
	Message            string      `json:"message,omitempty"`
}

// ContainerStatus is the part of a container's status hotswap reads: its
// restarts and how it last ended.
type ContainerStatus struct {
	Name                 string         `json:"name"`
	RestartCount         int32          `json:"restartCount"`
	LastTerminationState ContainerState `json:"lastState,omitempty"`
}

// ContainerState is the terminated part of a container state.
type ContainerState struct {
	Terminated *ContainerStateTerminated `json:"terminated,omitempty"`
}

// ContainerStateTerminated says how a container ended.
type ContainerStateTerminated struct {
	ExitCode   int32       `json:"exitCode"`
	Reason     string      `json:"reason,omitempty"`
	FinishedAt metav1.Time `json:"finishedAt,omitempty"`
}

// PodList is a list of pods.
type PodList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Pod `json:"items"`
}

// ConfigMap is a whole core/v1 ConfigMap: the rollout driver updates it,
// so no field may be missing.
type ConfigMap struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Immutable         *bool             `json:"immutable,omitempty"`
	Data              map[string]string `json:"data,omitempty"`
	BinaryData        map[string][]byte `json:"binaryData,omitempty"`
}

// ConfigMapList is a list of ConfigMaps.
type ConfigMapList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ConfigMap `json:"items"`
}

// Event is a whole core/v1 Event (hotswap creates and patches them).
type Event struct {
	metav1.TypeMeta     `json:",inline"`
	metav1.ObjectMeta   `json:"metadata"`
	InvolvedObject      ObjectReference  `json:"involvedObject"`
	Reason              string           `json:"reason,omitempty"`
	Message             string           `json:"message,omitempty"`
	Source              EventSource      `json:"source,omitempty"`
	FirstTimestamp      metav1.Time      `json:"firstTimestamp,omitempty"`
	LastTimestamp       metav1.Time      `json:"lastTimestamp,omitempty"`
	Count               int32            `json:"count,omitempty"`
	Type                string           `json:"type,omitempty"`
	EventTime           metav1.MicroTime `json:"eventTime,omitempty"`
	Series              *EventSeries     `json:"series,omitempty"`
	Action              string           `json:"action,omitempty"`
	Related             *ObjectReference `json:"related,omitempty"`
	ReportingController string           `json:"reportingComponent"`
	ReportingInstance   string           `json:"reportingInstance"`
}

// EventSeries is the series of a repeated event.
type EventSeries struct {
	Count            int32            `json:"count,omitempty"`
	LastObservedTime metav1.MicroTime `json:"lastObservedTime,omitempty"`
}

// EventSource names the component that reported an event.
type EventSource struct {
	Component string `json:"component,omitempty"`
	Host      string `json:"host,omitempty"`
}

// ObjectReference names the object an event is about.
type ObjectReference struct {
	Kind            string    `json:"kind,omitempty"`
	Namespace       string    `json:"namespace,omitempty"`
	Name            string    `json:"name,omitempty"`
	UID             types.UID `json:"uid,omitempty"`
	APIVersion      string    `json:"apiVersion,omitempty"`
	ResourceVersion string    `json:"resourceVersion,omitempty"`
	FieldPath       string    `json:"fieldPath,omitempty"`
}

// EventList is a list of events.
type EventList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Event `json:"items"`
}
