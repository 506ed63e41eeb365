// Command ociimage writes a small container image built from a static busybox binary,
// as an OCI image layout tar (for `ctr images import` and `skopeo copy oci-archive:`)
// and optionally as a plain rootfs tar (for `docker import`). The test machines reach no
// image registry, so every image the e2e and conformance suites run is made here.
//
//	ociimage -busybox /usr/bin/busybox -name docker.io/library/busybox:latest -out busybox.oci.tar
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"
	"time"
)

// epoch is every file's mtime, so that the same inputs always give the same digests.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// passwd and group follow the busybox images critest expects: root, nobody, www-data (33),
// and the user and group that cri-tools' image-predefined-group adds.
const (
	passwd = "root:x:0:0:root:/root:/bin/sh\n" +
		"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n" +
		"www-data:x:33:33:www-data:/var/www:/bin/false\n" +
		"default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n" +
		"nobody:x:65534:65534:nobody:/home:/bin/false\n"
	group = "root:x:0:\n" +
		"daemon:x:1:\n" +
		"www-data:x:33:\n" +
		"default-user:x:1000:\n" +
		"group-defined-in-image:x:50000:default-user\n" +
		"nogroup:x:65534:\n"
)

type options struct {
	busybox    string
	out        string
	rootfsOut  string
	name       string
	entrypoint string
	cmd        string
	user       string
	labels     string
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var o options
	fs := flag.NewFlagSet("ociimage", flag.ContinueOnError)
	fs.StringVar(&o.busybox, "busybox", "/usr/bin/busybox", "static busybox binary to copy in")
	fs.StringVar(&o.out, "out", "", "OCI layout tar to write")
	fs.StringVar(&o.rootfsOut, "rootfs-out", "", "plain rootfs tar to write as well (optional)")
	fs.StringVar(&o.name, "name", "", "full image reference recorded in the index, e.g. docker.io/library/busybox:latest")
	fs.StringVar(&o.entrypoint, "entrypoint", "", `entrypoint as a JSON array, e.g. ["/bin/sleep","2147483647"]`)
	fs.StringVar(&o.cmd, "cmd", `["sh"]`, "command as a JSON array")
	fs.StringVar(&o.user, "user", "", "image user (uid, name, uid:gid)")
	fs.StringVar(&o.labels, "labels", "", "comma-separated key=value image labels (different labels make different image IDs)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.out == "" || o.name == "" {
		return errors.New("-out and -name are required")
	}
	return build(o)
}

func build(o options) error {
	layer, err := rootfsTar(o.busybox)
	if err != nil {
		return err
	}
	if o.rootfsOut != "" {
		if err := os.WriteFile(o.rootfsOut, layer, 0o644); err != nil {
			return fmt.Errorf("write rootfs tar %s: %w", o.rootfsOut, err)
		}
	}
	gzLayer, err := gzipBytes(layer)
	if err != nil {
		return err
	}
	cfg, err := imageConfig(o, digestOf(layer))
	if err != nil {
		return err
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor("application/vnd.oci.image.config.v1+json", cfg),
		"layers":        []any{descriptor("application/vnd.oci.image.layer.v1.tar+gzip", gzLayer)},
	})
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	manifestDesc := descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
	manifestDesc["annotations"] = map[string]string{
		// containerd reads the full name; skopeo and others read the short ref.
		"io.containerd.image.name":          o.name,
		"org.opencontainers.image.ref.name": tagOf(o.name),
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []any{manifestDesc},
	})
	if err != nil {
		return fmt.Errorf("encode index: %w", err)
	}
	return writeLayout(o.out, index, [][]byte{cfg, manifest, gzLayer})
}

// rootfsTar lays out busybox as /bin/sh with one symlink per applet: busybox dispatches
// on argv[0], so every applet works without a file named busybox in the image.
func rootfsTar(busyboxPath string) ([]byte, error) {
	binary, err := os.ReadFile(busyboxPath)
	if err != nil {
		return nil, fmt.Errorf("read busybox %s: %w", busyboxPath, err)
	}
	out, err := exec.Command(busyboxPath, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("list applets of %s: %w", busyboxPath, err)
	}
	applets := strings.Fields(string(out))
	sort.Strings(applets)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	addDir := func(dir string, mode int64) error {
		if dir == "." || dir == "" || dirs[dir] {
			return nil
		}
		dirs[dir] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: mode, ModTime: epoch, Format: tar.FormatPAX})
	}
	for _, d := range []string{"bin", "dev", "etc", "home", "proc", "root", "sbin", "sys", "usr", "usr/bin", "usr/sbin", "var", "var/www", "home/default-user"} {
		if err := addDir(d, 0o755); err != nil {
			return nil, fmt.Errorf("tar dir %s: %w", d, err)
		}
	}
	if err := addDir("tmp", 0o1777); err != nil {
		return nil, fmt.Errorf("tar dir tmp: %w", err)
	}
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"bin/sh", 0o755, binary},
		{"etc/passwd", 0o644, []byte(passwd)},
		{"etc/group", 0o644, []byte(group)},
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("tar write %s: %w", f.name, err)
		}
	}
	for _, a := range applets {
		name := strings.TrimPrefix(path.Clean("/"+a), "/")
		if name == "bin/sh" || name == "" {
			continue
		}
		if err := addDir(path.Dir(name), 0o755); err != nil {
			return nil, fmt.Errorf("tar dir %s: %w", path.Dir(name), err)
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: "/bin/sh", Mode: 0o777, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return nil, fmt.Errorf("tar symlink %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close rootfs tar: %w", err)
	}
	return buf.Bytes(), nil
}

func imageConfig(o options, diffID string) ([]byte, error) {
	config := map[string]any{
		"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	}
	for flagName, raw := range map[string]string{"Entrypoint": o.entrypoint, "Cmd": o.cmd} {
		if raw == "" {
			continue
		}
		var argv []string
		if err := json.Unmarshal([]byte(raw), &argv); err != nil {
			return nil, fmt.Errorf("%s %q is not a JSON array of strings: %w", strings.ToLower(flagName), raw, err)
		}
		config[flagName] = argv
	}
	if o.entrypoint != "" && o.cmd == `["sh"]` {
		delete(config, "Cmd") // the default command only makes sense without an entrypoint
	}
	if o.user != "" {
		config["User"] = o.user
	}
	if o.labels != "" {
		labels := map[string]string{}
		for _, kv := range strings.Split(o.labels, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("label %q is not key=value", kv)
			}
			labels[k] = v
		}
		config["Labels"] = labels
	}
	cfg, err := json.Marshal(map[string]any{
		"created":      epoch.Format(time.RFC3339),
		"architecture": "amd64",
		"os":           "linux",
		"config":       config,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{diffID}},
		"history":      []any{map[string]string{"created": epoch.Format(time.RFC3339), "created_by": "criguard test/e2e/tools/ociimage"}},
	})
	if err != nil {
		return nil, fmt.Errorf("encode image config: %w", err)
	}
	return cfg, nil
}

// writeLayout writes an OCI image layout (oci-layout, index.json, blobs/sha256/…) as a tar.
func writeLayout(out string, index []byte, blobs [][]byte) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return fmt.Errorf("layout header %s: %w", name, err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("layout write %s: %w", name, err)
		}
		return nil
	}
	if err := add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch}); err != nil {
			return fmt.Errorf("layout dir %s: %w", dir, err)
		}
	}
	for _, b := range blobs {
		if err := add("blobs/sha256/"+strings.TrimPrefix(digestOf(b), "sha256:"), b); err != nil {
			return err
		}
	}
	if err := add("index.json", index); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("close layout tar: %w", err)
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}

func gzipBytes(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf) // no name, zero mtime: deterministic
	if _, err := io.Copy(zw, bytes.NewReader(data)); err != nil {
		return nil, fmt.Errorf("gzip layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip layer: %w", err)
	}
	return buf.Bytes(), nil
}

func digestOf(data []byte) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256(data))
}

func descriptor(mediaType string, data []byte) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": digestOf(data), "size": len(data)}
}

// tagOf returns the tag of a reference ("latest" when it has none).
func tagOf(ref string) string {
	last := ref[strings.LastIndex(ref, "/")+1:]
	if _, tag, ok := strings.Cut(last, ":"); ok {
		return tag
	}
	return "latest"
}
