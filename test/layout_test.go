package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The layout tests hold the tree to the package map that opens
// docs/architecture.md and to the rules it states: the map lists every
// package with exactly the packages of ours it imports, the domain imports
// nothing of ours, the data path's packages below the agent never reach
// NATS, handlers, projections and hostsync do not import each other, every
// package has a doc.go, and no Go file is over 600 lines.

const module = "github.com/siterecovery/siterecovery"

// listedPackage is what `go list -json` says of one package.
type listedPackage struct {
	ImportPath string
	Dir        string
	Imports    []string
	Deps       []string
	GoFiles    []string
}

func goList(t *testing.T) []listedPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	require.NoError(t, err, "go list")
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p listedPackage
		require.NoError(t, dec.Decode(&p))
		pkgs = append(pkgs, p)
	}
	require.NotEmpty(t, pkgs)
	return pkgs
}

// ours returns the module's packages among paths, relative to the module.
func ours(paths []string) []string {
	var out []string
	for _, p := range paths {
		if rel, ok := strings.CutPrefix(p, module+"/"); ok {
			out = append(out, rel)
		}
	}
	slices.Sort(out)
	return out
}

var mapRow = regexp.MustCompile("^\\| `([a-z0-9/]+)` \\| ([^|]*) \\|")

// packageMap reads the table of docs/architecture.md's "Package map"
// section: package → the packages of ours it imports.
func packageMap(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("../docs/architecture.md")
	require.NoError(t, err)
	defer f.Close()
	m := map[string][]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## Package map"
			continue
		}
		if !in {
			continue
		}
		if g := mapRow.FindStringSubmatch(line); g != nil {
			imports := regexp.MustCompile("`([a-z0-9/]+)`").FindAllStringSubmatch(g[2], -1)
			var list []string
			for _, i := range imports {
				list = append(list, i[1])
			}
			slices.Sort(list)
			m[g[1]] = list
		}
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, m, `docs/architecture.md has no "## Package map" table`)
	return m
}

func TestLayoutPackageMapMatchesTheTree(t *testing.T) {
	documented := packageMap(t)
	for _, p := range goList(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if rel == "" {
			continue
		}
		want, ok := documented[rel]
		if !ok {
			t.Errorf("docs/architecture.md: package %s is not in the package map", rel)
			continue
		}
		delete(documented, rel)
		if got := ours(p.Imports); !slices.Equal(got, want) {
			t.Errorf("docs/architecture.md: %s imports %v, the package map says %v", rel, got, want)
		}
	}
	for rel := range documented {
		t.Errorf("docs/architecture.md: the package map lists %s, which is not in the tree", rel)
	}
}

func TestLayoutRules(t *testing.T) {
	for _, p := range goList(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		deps := ours(p.Deps)
		switch {
		case rel == "events":
			require.Empty(t, deps, "the domain imports nothing of ours")
		case strings.HasPrefix(rel, "hostsync/") && rel != "hostsync/natsbus":
			for _, d := range p.Deps {
				require.False(t, strings.HasPrefix(d, "github.com/nats-io/"),
					"%s is below the agent and must not reach NATS (it depends on %s)", rel, d)
			}
		}
		for _, top := range []string{"handlers", "projections", "hostsync"} {
			if rel != top && !strings.HasPrefix(rel, top+"/") {
				continue
			}
			for _, other := range []string{"handlers", "projections", "hostsync"} {
				if other == top {
					continue
				}
				for _, d := range deps {
					require.False(t, d == other || strings.HasPrefix(d, other+"/"),
						"%s imports %s: handlers, projections and hostsync import events, not each other", rel, d)
				}
			}
		}
		_, err := os.Stat(filepath.Join(p.Dir, "doc.go"))
		require.NoError(t, err, "package %s has no doc.go", rel)
	}
}

func TestLayoutNoFileOver600Lines(t *testing.T) {
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if n := bytes.Count(raw, []byte("\n")); n > 600 {
			t.Errorf("%s has %d lines (at most 600)", path, n)
		}
		return nil
	})
	require.NoError(t, err)
}
