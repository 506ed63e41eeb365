device "data" {
  path = "/var/lib/containerd"

class "bulk" {
