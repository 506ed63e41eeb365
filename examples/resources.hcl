# Beyond disk I/O: batch namespaces get a process cap, a soft memory ceiling below
# their limit (cgroup v2) and a low CPU weight, next to their disk throttle.
# Check with: criguard check --host resources.hcl (it refuses memory.high on v1)

device "data" {
  path = "/var/lib/containerd"
}

class "batch" {
  io {
    device    = "data"
    write_bps = "40MiB"
  }
  pids {
    max = 512 # tasks (processes and threads) per container
  }
  memory {
    high = "90%" # of the container's memory limit; or bytes, e.g. "1GiB"
  }
  cpu {
    weight = 50    # cgroup v2 scale, 1 to 10000 (100 is one default share = 1024 cpu.shares)
    max    = "2"   # at most 2 CPUs, or e.g. "500m"
  }
}

class "no-fork-bombs" {
  pids {
    max = 256
  }
}

rule "batch" {
  match {
    namespaces = ["batch", "etl-*"]
  }
  class = "batch"
}

rule "everyone-else" {
  class = "no-fork-bombs"
}
