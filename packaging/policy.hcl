# /etc/criguard/policy.hcl: criguard's policy. As installed it declares nothing,
# so criguard forwards every CRI call and throttles nothing.
#
# To start:
#   1. Say which disk to throttle and how, and which pods get it; the block
#      below, uncommented, throttles writes of pods in namespaces batch-* to
#      40 MiB/s on the disk under /var/lib/containerd. More examples:
#      /usr/share/doc/criguard/examples/*.hcl; the reference: docs/policy.md.
#   2. Check it on this node:   criguard check --host /etc/criguard/policy.hcl
#   3. Nothing to restart: criguard reloads this file when it changes, and keeps
#      the last good policy if the new one is broken.
#   4. Put criguard in kubelet's path (once per node): criguard(8), FILES, and
#      /usr/share/doc/criguard/examples/20-criguard.conf.
#   5. See what a container got and why:   criguard status;  criguard explain ID
#
# device "data" {
#   path = "/var/lib/containerd"
# }
#
# class "batch" {
#   io {
#     device    = "data"
#     write_bps = "40MiB"
#   }
# }
#
# rule "batch" {
#   match {
#     namespaces = ["batch-*"]
#   }
#   class = "batch"
# }
