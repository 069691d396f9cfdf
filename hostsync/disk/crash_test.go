package disk

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const (
	killChildEnv  = "SR_TRACKED_DISK_KILL_CHILD"
	killDiskSize  = 1 << 20
	killSlot      = 4096
	killAckTarget = 150
)

// killPattern is write i's data: i in the first 8 bytes, then byte(i).
func killPattern(i int) []byte {
	b := bytes.Repeat([]byte{byte(i)}, killSlot)
	binary.LittleEndian.PutUint64(b, uint64(i)+1)
	return b
}

func killOffset(i int) int64 { return int64(i%(killDiskSize/killSlot)) * killSlot }

// TestTrackedDiskKill9Child is the child process of
// TestTrackedDiskSurvivesKill9; it does nothing in a normal run.
func TestTrackedDiskKill9Child(t *testing.T) {
	path := os.Getenv(killChildEnv)
	if path == "" {
		t.Skip("runs only as the child of TestTrackedDiskSurvivesKill9")
	}
	d, err := Open(path, killDiskSize, Options{MaxLogBytes: 64 << 20})
	require.NoError(t, err)
	for i := 0; ; i++ {
		require.NoError(t, d.WriteAt(killPattern(i), killOffset(i), i%2 == 0))
		if i%2 == 1 {
			require.NoError(t, d.Flush())
		}
		fmt.Printf("ack %d\n", i)
		if i%10 == 9 {
			seq, err := d.CloseCycle(time.Now(), false)
			require.NoError(t, err)
			fmt.Printf("cycle %d %d\n", seq, i)
		}
	}
}

// TestTrackedDiskSurvivesKill9 kills a process writing through the disk API
// with SIGKILL, then checks that reopening recovers every acknowledged
// write, every closed cycle, and that the cycles compose to the image.
func TestTrackedDiskSurvivesKill9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.img")
	cmd := exec.Command(os.Args[0], "-test.run=^TestTrackedDiskKill9Child$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+path)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	acked, cycles := -1, map[uint64]int{}
	sc := bufio.NewScanner(out)
	for acked < killAckTarget && sc.Scan() {
		var a, b int
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "ack "):
			_, err = fmt.Sscanf(line, "ack %d", &a)
			acked = a
		case strings.HasPrefix(line, "cycle "):
			_, err = fmt.Sscanf(line, "cycle %d %d", &a, &b)
			cycles[uint64(a)] = b
		}
		require.NoError(t, err, line)
	}
	require.NoError(t, cmd.Process.Kill())
	require.Error(t, cmd.Wait(), "the child died of SIGKILL")
	require.Equal(t, killAckTarget, acked, "child output ended early")

	boot, err := bootID("")
	require.NoError(t, err)
	d := mustOpenDisk(t, path, killDiskSize, Options{BootID: boot, MaxLogBytes: 64 << 20})
	ok, why := d.NeedsResync()
	require.False(t, ok, why)
	img := readImage(t, path)
	for i := max(0, acked-killDiskSize/killSlot+1); i <= acked; i++ {
		got := img[killOffset(i) : killOffset(i)+killSlot]
		j := int(binary.LittleEndian.Uint64(got)) - 1
		require.GreaterOrEqual(t, j, i, "acknowledged write %d lost", i)
		require.Equal(t, killPattern(j), got)
	}
	pending := d.Pending()
	for seq := range cycles {
		require.Contains(t, pending, seq, "closed cycle %d lost", seq)
	}
	_, err = d.CloseCycle(time.Now(), false)
	require.NoError(t, err)
	replica := make([]byte, killDiskSize)
	for _, seq := range d.Pending() {
		c, err := d.Cycle(seq)
		require.NoError(t, err)
		applyCycle(replica, c)
	}
	require.Equal(t, img, replica, "the cycles compose to the recovered image")
}
