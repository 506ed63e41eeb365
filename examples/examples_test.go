// Package examples holds the deployment kit; its test proves the kit is valid.
package examples

import (
	"os"
	"strings"
	"testing"

	"github.com/criguard/criguard/policy"
)

const criguardSocket = "unix:///run/criguard/criguard.sock"

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The policy inside the ConfigMap is what nodes will load: it must be valid.
func TestConfigMapPolicyIsValid(t *testing.T) {
	manifest := read(t, "kubernetes/policy-configmap.yaml")
	_, body, ok := strings.Cut(manifest, "  policy.hcl: |\n")
	if !ok {
		t.Fatal("the ConfigMap has no policy.hcl key")
	}
	var src strings.Builder
	for _, line := range strings.Split(body, "\n") {
		if line != "" && !strings.HasPrefix(line, "    ") {
			break
		}
		src.WriteString(strings.TrimPrefix(line, "    ") + "\n")
	}
	p, diags := policy.Parse([]byte(src.String()), "policy-configmap.yaml#policy.hcl")
	if diags.HasErrors() {
		t.Fatalf("ConfigMap policy: %v", diags)
	}
	if len(p.Rules) == 0 || len(p.Classes) == 0 {
		t.Fatalf("ConfigMap policy parsed to nothing: %+v", p)
	}
}

func TestKubeletAndCrictlPointAtCriguard(t *testing.T) {
	dropIn := read(t, "systemd/20-criguard.conf")
	// The endpoint flags come after every variable kubeadm and /etc/default/kubelet
	// fill: kubelet takes a repeated flag's last value.
	var execStart string
	for _, line := range strings.Split(dropIn, "\n") {
		if strings.HasPrefix(line, "ExecStart=") {
			execStart = line
		}
		if strings.HasPrefix(line, "Environment=") {
			t.Errorf("kubelet drop-in sets %s, which kubeadm's EnvironmentFile overrides", line)
		}
	}
	extra := strings.Index(execStart, "$KUBELET_EXTRA_ARGS")
	for _, flag := range []string{"--container-runtime-endpoint=" + criguardSocket, "--image-service-endpoint=" + criguardSocket} {
		if i := strings.Index(execStart, flag); i < 0 || extra < 0 || i < extra {
			t.Errorf("kubelet drop-in's last ExecStart must end with %s after $KUBELET_EXTRA_ARGS: %q", flag, execStart)
		}
	}
	config := read(t, "kubelet/config-criguard.yaml")
	for _, key := range []string{"containerRuntimeEndpoint: " + criguardSocket, "imageServiceEndpoint: " + criguardSocket} {
		if !strings.Contains(config, key) {
			t.Errorf("kubelet config example lacks %q", key)
		}
	}
	crictl := read(t, "crictl.yaml")
	for _, key := range []string{"runtime-endpoint: " + criguardSocket, "image-endpoint: " + criguardSocket} {
		if !strings.Contains(crictl, key) {
			t.Errorf("crictl.yaml lacks %q", key)
		}
	}
}
