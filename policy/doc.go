// Package policy reads criguard's HCL policy file and answers, for one workload, which
// disk-I/O throttles (and pids, memory and cpu throttles) apply and why.
//
// A policy declares devices (labels for a block device, MAJ:MIN or a path on a
// filesystem), classes (named sets of per-device limits, and a container's pids, memory
// and cpu throttles), rules (which workloads get
// which class, first match in file order wins) and the bounds within which pods may ask
// for their own numbers by annotation. Parse and Load report every problem at once as
// hcl.Diagnostics with the file, line and column; Watcher keeps the last good policy
// while the file is edited.
package policy
