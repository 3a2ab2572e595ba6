package main

// CancelTask as vCenter answers it for work it can no longer stop.
//
// vcsim cannot stop a task's goroutine: its CancelTask marks the task failed
// (RequestCanceled) while the work goes on, and the task then turns to success
// with its result, so a VM appears after its task said it failed. vCenter's
// task states only move forward: a task that finishes before the cancel takes
// effect ends in success, and CancelTask of a task already done fails with
// InvalidState (vSphere API reference, Task.CancelTask). Here a cancel waits
// for the task to end, then vcsim's own CancelTask gives that answer.

import (
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// cancelWaitLimit bounds how long a CancelTask waits for its task.
const cancelWaitLimit = 5 * time.Minute

func installCancelAfterEnd(model *simulator.Model) {
	registry := model.Map()
	earlier := registry.Handler
	registry.Handler = func(ctx *simulator.Context, method *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		if _, ok := method.Body.(*types.CancelTask); ok {
			if task, ok := ctx.Map.Get(method.This).(*simulator.Task); ok {
				deadline := time.Now().Add(cancelWaitLimit)
				for !taskEnded(ctx, task) && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}
		if earlier != nil {
			return earlier(ctx, method)
		}
		return nil, nil
	}
}

func taskEnded(ctx *simulator.Context, task *simulator.Task) bool {
	var state types.TaskInfoState
	ctx.Map.WithLock(ctx, task, func() { state = task.Info.State })
	return state == types.TaskInfoStateSuccess || state == types.TaskInfoStateError
}
