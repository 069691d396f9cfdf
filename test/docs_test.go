package test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The docs tests hold README.md and every Markdown file of docs/ to the
// tree, outside fenced code blocks:
//   - a backticked repository path (`hostsync/batch`,
//     `handlers/<component>_decide.go`) must exist as written;
//   - a backticked package path with an exported name
//     (`events/subscribe.Follow`) must declare it, and so must a package of
//     ours named by its name alone (`agentproto.DeltaSubject`), unless a
//     package imported from outside the module has that name too
//     (`jetstream`);
//   - a backticked bare Go file name (`codec.go`, `catalog_*.go`) must exist
//     in some directory of the repository;
//   - a relative Markdown link must point to a file that exists.
//
// Files the program writes at run time (`replica.json`, `ir.json`) are
// neither Go files nor repository paths and are not checked.

// repoRoot is the repository, seen from the test/ directory tests run in.
const repoRoot = ".."

// repoPathPrefixes are the top-level directories a backticked token must
// start with to be taken for a repository path.
var repoPathPrefixes = []string{"cmd/", "events/", "projections/", "handlers/", "hostsync/", "test/", "docs/"}

// docSpan is a code span or a link target of a doc, at its line.
type docSpan struct {
	line int
	text string
}

// docFile is one Markdown file: its path from the repository root, its
// code spans and its relative link targets.
type docFile struct {
	name  string
	spans []docSpan
	links []docSpan
}

// repoTree is what the docs may name: every path of the repository
// (slash-separated, from its root), the base names of its Go files, its
// packages and what they declare.
type repoTree struct {
	paths   map[string]bool
	goFiles []string
	pkgDirs map[string][]string        // a package's name → the directories of that name
	foreign map[string]bool            // the names of the packages imported from outside the module
	decls   map[string]map[string]bool // package dir → declared names, cached
}

func TestDocsNameFilesAndPackagesThatExist(t *testing.T) {
	tree := loadRepoTree(t)
	for _, doc := range loadDocs(t) {
		for _, s := range doc.spans {
			if missing := tree.check(s.text); missing != "" {
				t.Errorf("%s:%d: `%s`: %s", doc.name, s.line, s.text, missing)
			}
		}
	}
}

func TestDocsLinksPointToFilesThatExist(t *testing.T) {
	for _, doc := range loadDocs(t) {
		for _, l := range doc.links {
			target := path.Join(path.Dir(doc.name), l.text)
			if _, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(target))); err != nil {
				t.Errorf("%s:%d: the link to %s points to %s, which does not exist", doc.name, l.line, l.text, target)
			}
		}
	}
}

// TestDocsCheckCatchesStaleNames holds the checks themselves to what they
// must catch and let pass, on a doc written for the purpose.
func TestDocsCheckCatchesStaleNames(t *testing.T) {
	tree := loadRepoTree(t)
	doc := parseDoc("docs/x.md", "See `hostsync/batch` and `decode.go`, the\n"+
		"`handlers/<component>_decide.go` files, `events/subscribe.Follow`,\n"+
		"[files](reference/files.md#the-replica), [web](https://nats.io/) and\n"+
		"`replica.json`, `go test ./hostsync/...`, `agentproto.DeltaSubject`,\n"+
		"`jetstream.AsyncPersistMode`, `nats.ErrPermissionViolation`, `demo.log`.\n\n"+
		"```\n`hostsync/gone` in a fence\n```\n"+
		"Stale: `hostsync/batch.go`, `batch_decode.go`, `hostsync/disk.TrackedDisk`, `hostsync.DeltaSubject`,\n"+
		"`hostsync/gone/*.go`, [gone](reference/gone.md).\n")
	var missing []string
	for _, s := range doc.spans {
		if tree.check(s.text) != "" {
			missing = append(missing, s.text)
		}
	}
	require.Equal(t, []string{"hostsync/batch.go", "batch_decode.go", "hostsync/disk.TrackedDisk", "hostsync.DeltaSubject", "hostsync/gone/*.go"}, missing)
	require.Equal(t, []docSpan{{3, "reference/files.md"}, {11, "reference/gone.md"}}, doc.links)
	require.Equal(t, 10, doc.spans[len(doc.spans)-2].line)
}

// loadDocs reads README.md and every Markdown file below docs/.
func loadDocs(t *testing.T) []docFile {
	t.Helper()
	names := []string{"README.md"}
	err := filepath.WalkDir(filepath.Join(repoRoot, "docs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".md") {
			return err
		}
		rel, err := filepath.Rel(repoRoot, p)
		names = append(names, filepath.ToSlash(rel))
		return err
	})
	require.NoError(t, err)
	require.Greater(t, len(names), 2, "no Markdown files found in docs/")
	var docs []docFile
	for _, name := range names {
		raw, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(name)))
		require.NoError(t, err)
		docs = append(docs, parseDoc(name, string(raw)))
	}
	return docs
}

var (
	codeSpan = regexp.MustCompile("`([^`]+)`")
	mdLink   = regexp.MustCompile(`\]\(([^()\s]+)(?:\s+"[^"]*")?\)`)
)

// parseDoc finds the code spans and the relative link targets of a
// Markdown text, outside fenced code blocks. A code span may run over a
// line break within a paragraph; it is at the line it starts on.
func parseDoc(name, text string) docFile {
	doc := docFile{name: name}
	lines := strings.Split(text, "\n")
	fenced := false
	for i, l := range lines {
		trimmed := strings.TrimSpace(l)
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fenced = !fenced
			lines[i] = ""
		} else if fenced {
			lines[i] = ""
		}
	}
	for start := 0; start < len(lines); {
		end := start
		for end < len(lines) && strings.TrimSpace(lines[end]) != "" {
			end++
		}
		if end > start {
			doc.parseParagraph(start+1, strings.Join(lines[start:end], "\n"))
		}
		start = end + 1
	}
	return doc
}

// parseParagraph adds the spans and links of one paragraph starting at
// line first. Links are looked for with the code spans blanked out.
func (d *docFile) parseParagraph(first int, para string) {
	lineOf := func(off int) int { return first + strings.Count(para[:off], "\n") }
	blanked := []byte(para)
	for _, m := range codeSpan.FindAllStringSubmatchIndex(para, -1) {
		text := strings.Join(strings.Fields(para[m[2]:m[3]]), " ")
		d.spans = append(d.spans, docSpan{lineOf(m[0]), text})
		for i := m[0]; i < m[1]; i++ {
			if blanked[i] != '\n' {
				blanked[i] = ' '
			}
		}
	}
	for _, m := range mdLink.FindAllStringSubmatchIndex(string(blanked), -1) {
		target := string(blanked[m[2]:m[3]])
		if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
			continue
		}
		target, _, _ = strings.Cut(target, "#")
		target, _, _ = strings.Cut(target, "?")
		if target != "" {
			d.links = append(d.links, docSpan{lineOf(m[0]), target})
		}
	}
}

// loadRepoTree lists the repository's paths, .git aside.
func loadRepoTree(t *testing.T) *repoTree {
	t.Helper()
	tree := &repoTree{paths: map[string]bool{}, pkgDirs: map[string][]string{}, foreign: map[string]bool{},
		decls: map[string]map[string]bool{}}
	err := filepath.WalkDir(repoRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == ".git" {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(repoRoot, p)
		if err != nil || rel == "." {
			return err
		}
		tree.paths[filepath.ToSlash(rel)] = true
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".go") {
			tree.addGoFile(filepath.ToSlash(rel))
		}
		return nil
	})
	require.NoError(t, err)
	require.True(t, tree.paths["go.mod"], "the repository root is not %s", repoRoot)
	return tree
}

// addGoFile records a Go file's name, its package directory and the
// names of the packages it imports from outside the module.
func (r *repoTree) addGoFile(rel string) {
	r.goFiles = append(r.goFiles, path.Base(rel))
	dir := path.Dir(rel)
	if base := path.Base(dir); !slices.Contains(r.pkgDirs[base], dir) {
		r.pkgDirs[base] = append(r.pkgDirs[base], dir)
	}
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(repoRoot, filepath.FromSlash(rel)), nil, parser.ImportsOnly)
	if err != nil {
		return
	}
	for _, imp := range f.Imports {
		if p := strings.Trim(imp.Path.Value, `"`); !strings.HasPrefix(p, module+"/") {
			r.foreign[path.Base(p)] = true
		}
	}
}

var (
	// placeholder is a part of a path the doc leaves open: <component>.
	placeholder = regexp.MustCompile(`<[^<>/]*>`)
	// bareGoFile is a Go file name without a directory: codec.go, catalog_*.go.
	bareGoFile = regexp.MustCompile(`^[A-Za-z0-9_.*<>-]+\.go$`)
	// qualified is a package path with a name of it: events/subscribe.Follow.
	qualified = regexp.MustCompile(`^([a-z0-9_/]+/[a-z0-9_]+)\.([A-Z][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)$`)
	// byName is a package's name with a name of it: agentproto.DeltaSubject.
	byName = regexp.MustCompile(`^([a-z][a-z0-9]*)\.([A-Z][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)$`)
)

// check says what of a code span's token is missing from the tree, or ""
// when it names nothing of the repository or names what exists.
func (r *repoTree) check(token string) string {
	if strings.ContainsAny(token, " \t") {
		return ""
	}
	if bareGoFile.MatchString(token) {
		pattern := placeholder.ReplaceAllString(token, "*")
		if !slices.ContainsFunc(r.goFiles, func(name string) bool { ok, _ := path.Match(pattern, name); return ok }) {
			return "no Go file of that name in the repository"
		}
		return ""
	}
	if g := byName.FindStringSubmatch(token); g != nil {
		return r.checkByName(g[1], g[2])
	}
	p := strings.TrimPrefix(token, "./")
	if !slices.ContainsFunc(repoPathPrefixes, func(prefix string) bool { return strings.HasPrefix(p, prefix) }) {
		return ""
	}
	p = strings.TrimSuffix(strings.TrimSuffix(p, "/..."), "/")
	p, _, _ = strings.Cut(p, "#")
	if g := qualified.FindStringSubmatch(p); g != nil {
		return r.checkDecl(g[1], g[2])
	}
	if strings.ContainsAny(p, "<*") {
		matches, _ := filepath.Glob(filepath.Join(repoRoot, filepath.FromSlash(placeholder.ReplaceAllString(p, "*"))))
		if len(matches) == 0 {
			return "no path of the repository matches it"
		}
		return ""
	}
	if !r.paths[p] {
		return "no such path in the repository"
	}
	return ""
}

// checkByName checks a name of a package of ours named by its package
// name; a name no package of ours has, or an outside package's, is not
// checked.
func (r *repoTree) checkByName(pkg, name string) string {
	dirs := r.pkgDirs[pkg]
	if len(dirs) == 0 || r.foreign[pkg] {
		return ""
	}
	for _, dir := range dirs {
		if r.checkDecl(dir, name) == "" {
			return ""
		}
	}
	return "package " + pkg + " (" + strings.Join(dirs, ", ") + ") declares no " + name
}

// checkDecl says whether package dir declares name: a top-level name, or
// Type.Method or Type.Field.
func (r *repoTree) checkDecl(dir, name string) string {
	if !r.paths[dir] {
		return "no package " + dir + " in the repository"
	}
	decls, ok := r.decls[dir]
	if !ok {
		decls = declaredNames(filepath.Join(repoRoot, filepath.FromSlash(dir)))
		r.decls[dir] = decls
	}
	if !decls[name] {
		return "package " + dir + " declares no " + name
	}
	return ""
}

// declaredNames lists what the Go files of dir declare: top-level names,
// methods and struct fields as Type.Name.
func declaredNames(dir string) map[string]bool {
	names := map[string]bool{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			continue
		}
		for _, decl := range f.Decls {
			addDecl(names, decl)
		}
	}
	return names
}

func addDecl(names map[string]bool, decl ast.Decl) {
	switch d := decl.(type) {
	case *ast.FuncDecl:
		if d.Recv == nil {
			names[d.Name.Name] = true
		} else if recv := receiverName(d.Recv.List[0].Type); recv != "" {
			names[recv+"."+d.Name.Name] = true
		}
	case *ast.GenDecl:
		for _, spec := range d.Specs {
			switch s := spec.(type) {
			case *ast.TypeSpec:
				names[s.Name.Name] = true
				addMembers(names, s.Name.Name, s.Type)
			case *ast.ValueSpec:
				for _, n := range s.Names {
					names[n.Name] = true
				}
			}
		}
	}
}

// addMembers adds a struct's fields or an interface's methods as Type.Name.
func addMembers(names map[string]bool, typeName string, expr ast.Expr) {
	var fields *ast.FieldList
	switch x := expr.(type) {
	case *ast.StructType:
		fields = x.Fields
	case *ast.InterfaceType:
		fields = x.Methods
	default:
		return
	}
	for _, f := range fields.List {
		for _, n := range f.Names {
			names[typeName+"."+n.Name] = true
		}
	}
}

// receiverName is the type name of a method's receiver: T, *T, T[P].
func receiverName(expr ast.Expr) string {
	for {
		switch x := expr.(type) {
		case *ast.StarExpr:
			expr = x.X
		case *ast.IndexExpr:
			expr = x.X
		case *ast.IndexListExpr:
			expr = x.X
		case *ast.Ident:
			return x.Name
		default:
			return ""
		}
	}
}
