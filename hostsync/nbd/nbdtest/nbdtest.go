package nbdtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// ToolTimeout bounds one run of a client.
const ToolTimeout = 60 * time.Second

// RequireTools fails the test with a clear message when a real NBD
// client is missing.
func RequireTools(tb testing.TB, tools ...string) {
	tb.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Fatalf("%s not found: install the real NBD clients with `apt-get install -y qemu-utils libnbd-bin` (make test does)", tool)
		}
	}
}

// RunTool runs an external NBD client, fails the test if it fails, and
// returns its combined output.
func RunTool(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ToolTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	require.NoError(tb, err, "%s %s: %s", name, strings.Join(args, " "), out)
	return string(out)
}

// QemuIO runs qemu-io commands (write -P, read -P, discard, write -z,
// flush, ...) against an NBD URL of a raw disk and fails on a pattern
// mismatch or any error; it returns the output.
func QemuIO(tb testing.TB, url string, cmds ...string) string {
	tb.Helper()
	args := []string{"-f", "raw", "-d", "unmap"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := RunTool(tb, "qemu-io", append(args, url)...)
	require.NotContains(tb, out, "fail", out)
	require.NotContains(tb, out, "error", out)
	return out
}

// Server is what ListenUnix needs of an NBD server (nbd.Server has it).
type Server interface {
	ListenUnix(path string) error
	Close() error
}

// ListenUnix makes srv listen on a short Unix socket path (one in
// t.TempDir can be longer than a socket path may be) and returns the path;
// srv is closed, and the socket's directory removed, when the test ends.
func ListenUnix(tb testing.TB, srv Server) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "nbd")
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, os.RemoveAll(dir)) })
	tb.Cleanup(func() { require.NoError(tb, srv.Close()) })
	sock := filepath.Join(dir, "s")
	require.NoError(tb, srv.ListenUnix(sock))
	return sock
}
