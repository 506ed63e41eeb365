package criservice

import (
	"maps"
	"sync"
)

// podInfo is what criguard knows of a pod sandbox.
type podInfo struct {
	ID, Namespace, Name, UID string
	Labels, Annotations      map[string]string
	CgroupParent             string // "" when unknown
}

// containerInfo is what criguard knows of a container.
type containerInfo struct {
	ID, PodID, Name, Image string
	// CgroupsPath and Dir are filled once resolved; a container's cgroup never moves.
	CgroupsPath, Dir string
}

// cache holds pod and container metadata seen in requests or listed from the
// runtime. The lock guards the maps only; no I/O ever happens under it.
type cache struct {
	mu         sync.RWMutex
	pods       map[string]*podInfo
	containers map[string]*containerInfo
}

func newCache() *cache {
	return &cache{pods: map[string]*podInfo{}, containers: map[string]*containerInfo{}}
}

// pod returns a copy so callers never share mutable state.
func (c *cache) pod(id string) (podInfo, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.pods[id]
	if !ok {
		return podInfo{}, false
	}
	return *p, true
}

func (c *cache) container(id string) (containerInfo, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	ct, ok := c.containers[id]
	if !ok {
		return containerInfo{}, false
	}
	return *ct, true
}

// putPod stores p, keeping a cgroup_parent learned earlier if p has none.
func (c *cache) putPod(p podInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.pods[p.ID]; ok && p.CgroupParent == "" {
		p.CgroupParent = old.CgroupParent
	}
	c.pods[p.ID] = &p
}

// putContainer stores ct, keeping a resolved cgroup learned earlier.
func (c *cache) putContainer(ct containerInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.containers[ct.ID]; ok && ct.Dir == "" {
		ct.CgroupsPath, ct.Dir = old.CgroupsPath, old.Dir
	}
	c.containers[ct.ID] = &ct
}

func (c *cache) setContainerDir(id, cgroupsPath, dir string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ct, ok := c.containers[id]; ok {
		ct.CgroupsPath, ct.Dir = cgroupsPath, dir
	}
}

func (c *cache) forgetContainer(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.containers, id)
}

// forgetPod drops the pod and every container it holds.
func (c *cache) forgetPod(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pods, id)
	maps.DeleteFunc(c.containers, func(_ string, ct *containerInfo) bool { return ct.PodID == id })
}

// retain drops everything the runtime no longer lists.
func (c *cache) retain(pods, containers map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	maps.DeleteFunc(c.pods, func(id string, _ *podInfo) bool { return !pods[id] })
	maps.DeleteFunc(c.containers, func(id string, _ *containerInfo) bool { return !containers[id] })
}

func (c *cache) size() (pods, containers int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.pods), len(c.containers)
}
