package main

// Provisioning operations limited per host and waiting beyond the limit, as
// vCenter's are: vCenter gives every operation a cost against per-host and
// per-datastore limits (vCenter Server and Host Management, "Limits on
// Simultaneous Migrations"). The provisioning figures used here, 16 units per
// host, 4 for a full clone and 1 for a linked clone, are the ones collected
// in the project's reference notes (real-vcenter-facts.md, "Sessions and
// load"); no public VMware page found states them. An
// operation over the budget is not refused, it waits; vcsim runs any number
// at once.
//
// Where it waits differs from vCenter: vCenter returns the task at once, in
// state queued; here the CloneVM_Task call itself returns once there is room.
// A task cannot be held back through the simulator's extension points
// (simulator.Task.Run starts at once), and the waiting happens before the
// call takes any object's lock, so nothing else waits for it.

import (
	"sync"

	"github.com/vmware/govmomi/vim25/types"
)

const (
	linkedCloneCost = 1
	fullCloneCost   = 4
)

type provisioningQueue struct {
	limit int // cost units per host; 0 is no limit

	mu      sync.Mutex
	changed *sync.Cond
	used    map[types.ManagedObjectReference]int
}

func newProvisioningQueue(limit int) *provisioningQueue {
	q := &provisioningQueue{limit: limit, used: make(map[types.ManagedObjectReference]int)}
	q.changed = sync.NewCond(&q.mu)
	return q
}

// acquire blocks until host has room for cost. An operation costlier than
// the whole budget runs alone.
func (q *provisioningQueue) acquire(host types.ManagedObjectReference, cost int) (release func()) {
	q.mu.Lock()
	for !(q.limit <= 0 || q.used[host] == 0 || q.used[host]+cost <= q.limit) {
		q.changed.Wait()
	}
	q.used[host] += cost
	q.mu.Unlock()
	return func() {
		q.mu.Lock()
		q.used[host] -= cost
		q.mu.Unlock()
		q.changed.Broadcast()
	}
}
