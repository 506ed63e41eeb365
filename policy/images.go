package policy

import (
	"slices"
	"strings"

	"github.com/distribution/reference"
)

// imageForms are the names an images pattern is tried against, so that however a pod
// author spells an image ("busybox:1.36", "library/busybox",
// "index.docker.io/library/busybox") a pattern on its normalized name catches it:
//   - the normalized reference, as the runtime pulls it: "docker.io/library/busybox:1.36"
//     (":latest" when neither tag nor digest is given; the digest alone when both are);
//   - the normalized name alone: "docker.io/library/busybox";
//   - the name as written, so that every pattern that matched before still does;
//   - the short forms docker and crictl print: "busybox:1.36", "busybox".
//
// A registry host is case-insensitive, and registry-1.docker.io is Docker Hub as much
// as index.docker.io is, so both are normalized too. An image ID or a name that does
// not parse is matched as written only.
func imageForms(image string) []string {
	forms := []string{image}
	ref, err := reference.ParseAnyReference(canonicalDomain(image))
	if err != nil {
		return forms
	}
	if _, named := ref.(reference.Named); !named {
		return forms // an image ID ("sha256:…")
	}
	full, err := reference.ParseDockerRef(ref.String())
	if err != nil {
		return forms
	}
	forms = []string{full.String(), full.Name()}
	for _, form := range []string{image, reference.FamiliarString(full), reference.FamiliarName(full)} {
		if !slices.Contains(forms, form) {
			forms = append(forms, form)
		}
	}
	return forms
}

// matchImage returns the first pattern that matches a form of image, and that form.
func matchImage(patterns []string, image string) (pattern, form string, ok bool) {
	for _, form := range imageForms(image) {
		if pattern, ok := firstGlob(patterns, form); ok {
			return pattern, form, true
		}
	}
	return "", "", false
}

// canonicalDomain lower-cases the registry host of image (DNS names are
// case-insensitive, image names are not) and names Docker Hub's API host docker.io.
// The first component is a host when it has a "." or ":" or is "localhost"; one with
// only upper case added ("Library/x") is a host too for reference and stays as it is,
// since lower-casing it would turn it into a Docker Hub path.
func canonicalDomain(image string) string {
	host, rest, found := strings.Cut(image, "/")
	if !found || !(strings.ContainsAny(host, ".:") || strings.EqualFold(host, "localhost")) {
		return image
	}
	host = strings.ToLower(host)
	if host == "registry-1.docker.io" {
		host = "docker.io"
	}
	return host + "/" + rest
}
