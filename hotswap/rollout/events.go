package rollout

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hotswap-dev/hotswap/hotswap/kube/core"
)

// event is one rollout event, recorded on the ConfigMap so `kubectl
// describe configmap` tells the rollout's story.
type event struct {
	reason  string // RolloutStarted, RolloutStep, RolloutHalted, ...
	msg     string
	warning bool
}

// record creates the event. A failure costs a log line and a count: the
// rollout's state is in the ConfigMap, not in its events.
func (d *Driver) record(ctx context.Context, cm *core.ConfigMap, e event) {
	now := metav1.NewTime(time.Now())
	typ := core.EventTypeNormal
	if e.warning {
		typ = core.EventTypeWarning
	}
	ev := &core.Event{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", cm.Name, now.UnixNano()), Namespace: cm.Namespace},
		InvolvedObject: core.ObjectReference{
			Kind: "ConfigMap", APIVersion: "v1", Namespace: cm.Namespace, Name: cm.Name, UID: cm.UID, ResourceVersion: cm.ResourceVersion,
		},
		Reason: e.reason, Message: e.msg, Type: typ,
		Source:         core.EventSource{Component: "hotswap-rollout"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: "hotswap.dev/rollout", ReportingInstance: d.opts.Name,
	}
	if len(ev.Message) > 1024 {
		ev.Message = ev.Message[:1021] + "..."
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := d.c.Post().Namespace(cm.Namespace).Resource("events").Body(ev).Do(rctx).Error(); err != nil {
		d.metrics.APIErrors.Add(1)
		d.log.Warn("cannot record the rollout event; the rollout goes on", "reason", e.reason, "err", err)
		return
	}
	d.metrics.Events.Add(1)
}
