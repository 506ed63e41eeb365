package criservice

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"sync"
)

// Pod is what criguard knows of a pod sandbox.
type Pod struct {
	ID, Namespace, Name, UID string
	Labels, Annotations      map[string]string
	CgroupParent             string // "" when unknown
	// decided is the pod's own decision and what it was made on (planner.decideOnce).
	decided *decided
}

// Container is what criguard knows of a container.
type Container struct {
	ID, PodID, Name, Image string
	// CgroupsPath and Dir are filled once resolved; a container's cgroup never moves.
	CgroupsPath, Dir string
	// Mounts are the mounts kubelet asked for (MountsKnown once learned: from
	// CreateContainer, or from the status after a restart); Rootfs is the host
	// directory of its writable layer once found. Both never change.
	Mounts      []Mount
	MountsKnown bool
	Rootfs      string
	// ignored is the hash of what was last logged of its ignored annotations.
	ignored uint64
	// seen is the cache generation it was last stored in.
	seen uint64
	// decided is its decision and what it was made on (planner.decideOnce).
	decided *decided
}

// cache holds pod and container metadata seen in requests or listed from the
// runtime. The lock guards the maps only; no I/O ever happens under it.
type cache struct {
	mu         sync.RWMutex
	pods       map[string]*Pod
	containers map[string]*Container
	// generation grows with every listing, so that retain never drops what was
	// stored while that listing was under way.
	generation uint64
	podSeen    map[string]uint64
	// starting and stopped are what a front end's events said of a container before
	// the runtime's listing may say it: an NRI event comes while the runtime still
	// lists the container as created (CRI-O's PostStartContainer) or as running
	// (containerd's StopContainer on exit). starting maps a container to its pod
	// while its start is handled; a stopped container never runs again.
	starting map[string]string
	stopped  map[string]bool
}

func newCache() *cache {
	return &cache{pods: map[string]*Pod{}, containers: map[string]*Container{}, podSeen: map[string]uint64{},
		starting: map[string]string{}, stopped: map[string]bool{}}
}

// pod returns a copy so callers never share mutable state.
func (c *cache) pod(id string) (Pod, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.pods[id]
	if !ok {
		return Pod{}, false
	}
	return *p, true
}

func (c *cache) container(id string) (Container, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	ct, ok := c.containers[id]
	if !ok {
		return Container{}, false
	}
	return *ct, true
}

// putPod stores p, keeping a cgroup_parent learned earlier if p has none.
func (c *cache) putPod(p Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.pods[p.ID]; ok {
		p.CgroupParent = cmp.Or(p.CgroupParent, old.CgroupParent)
		p.decided = cmp.Or(p.decided, old.decided)
	}
	c.pods[p.ID] = &p
	c.podSeen[p.ID] = c.generation
}

func (c *cache) setPodParent(id, parent string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.pods[id]; ok && p.CgroupParent == "" {
		p.CgroupParent = parent
	}
}

func (c *cache) setPodDecision(id string, d *decided) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.pods[id]; ok {
		p.decided = d
	}
}

func (c *cache) setContainerDecision(id string, d *decided) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ct, ok := c.containers[id]; ok {
		ct.decided = d
	}
}

// putContainer stores ct. What is known never gets poorer: a resolved cgroup and
// an image name learned earlier are kept when ct lacks them (a runtime may list
// only the image's digest).
func (c *cache) putContainer(ct Container) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.containers[ct.ID]; ok {
		if ct.Dir == "" {
			ct.CgroupsPath, ct.Dir = cmp.Or(ct.CgroupsPath, old.CgroupsPath), old.Dir
		}
		if !ct.MountsKnown {
			ct.Mounts, ct.MountsKnown = old.Mounts, old.MountsKnown
		}
		ct.Rootfs = cmp.Or(ct.Rootfs, old.Rootfs)
		if isImageDigest(ct.Image) && !isImageDigest(old.Image) {
			ct.Image = old.Image
		}
		ct.ignored = old.ignored
		ct.decided = cmp.Or(ct.decided, old.decided)
	}
	ct.seen = c.generation
	c.containers[ct.ID] = &ct
}

// noteIgnored records what was logged of a container's ignored annotations and
// reports whether it is new.
func (c *cache) noteIgnored(id string, ignored uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ct, ok := c.containers[id]
	if !ok {
		return true
	}
	if ct.ignored == ignored {
		return false
	}
	ct.ignored = ignored
	return true
}

// containerPathsOf lists the resolved cgroup paths of a pod's containers.
func (c *cache) containerPathsOf(podID string) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var paths []string
	for _, ct := range c.containers {
		if ct.PodID == podID && ct.CgroupsPath != "" {
			paths = append(paths, ct.CgroupsPath)
		}
	}
	return paths
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
	delete(c.starting, id)
	delete(c.stopped, id)
}

// forgetPod drops the pod and every container it holds.
func (c *cache) forgetPod(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pods, id)
	delete(c.podSeen, id)
	maps.DeleteFunc(c.containers, func(ctID string, ct *Container) bool {
		if ct.PodID == id {
			delete(c.stopped, ctID)
			return true
		}
		return false
	})
	maps.DeleteFunc(c.starting, func(_, podID string) bool { return podID == id })
}

// markStarting counts a container among its pod's running ones until the
// returned func is called: while its start is handled.
func (c *cache) markStarting(id, podID string) (done func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.starting[id] = podID
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.starting, id)
	}
}

// markStopped takes a container out of its pod's running ones for good.
func (c *cache) markStopped(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped[id] = true
	delete(c.starting, id)
}

// runningOf corrects a runtime's listing of a pod's running containers with the
// events seen: without the stopped ones, with those being started.
func (c *cache) runningOf(podID string, listed []string) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	ids := slices.DeleteFunc(slices.Clone(listed), func(id string) bool { return c.stopped[id] })
	for id, pod := range c.starting {
		if pod == podID && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids
}

// startListing begins a listing: what is stored from now on has this generation
// or a newer one.
func (c *cache) startListing() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.generation++
	return c.generation
}

// retain drops what the listing of generation gen did not find, except what was
// stored since it began (a pod or container created meanwhile).
func (c *cache) retain(gen uint64, pods, containers map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	maps.DeleteFunc(c.pods, func(id string, _ *Pod) bool {
		if !pods[id] && c.podSeen[id] < gen {
			delete(c.podSeen, id)
			return true
		}
		return false
	})
	maps.DeleteFunc(c.containers, func(id string, ct *Container) bool { return !containers[id] && ct.seen < gen })
	// A stopped container the runtime no longer lists as live needs no correcting.
	maps.DeleteFunc(c.stopped, func(id string, _ bool) bool { return !containers[id] })
}

// isImageDigest reports whether an image is no name at all, only a content address
// ("sha256:…" or the bare hex ID).
func isImageDigest(image string) bool {
	if image == "" || strings.HasPrefix(image, "sha256:") {
		return true
	}
	return len(image) == 64 && strings.Trim(image, "0123456789abcdef") == ""
}

func (c *cache) size() (pods, containers int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.pods), len(c.containers)
}
