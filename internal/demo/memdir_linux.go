package demo

import (
	"os"
	"syscall"
)

// memoryRoot is where a Linux system usually mounts a tmpfs for everyone.
const memoryRoot = "/dev/shm"

const (
	tmpfsMagic     = 0x01021994 // statfs(2) f_type of a tmpfs
	memoryDirSpace = 64 << 20   // free bytes the tmpfs must have: 500 instances take about 10 MiB
)

// MemoryDir makes a new directory on the tmpfs at /dev/shm for the fake
// plugin's instances, or returns "" when there is none with room. The
// caller removes it. The benchmarks use it too, to give the fake plugin
// the demo's conditions.
//
// An instance in inprocess mode is a directory and four files, created,
// renamed and removed within a burst. On an ext4 file system without a journal,
// as on the machine docs/performance.md describes, every inode allocation
// skips the inodes deleted in the last few seconds by reading each one's
// deletion time (the kernel's recently_deleted), so a burst of creations
// after deletions costs CPU that grows with the churn: 13 % of the
// machine's samples in a C = 128, L = 200 ms burst, taken from the
// controller under test. In memory it costs nothing of the kind.
func MemoryDir() string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(memoryRoot, &st); err != nil || st.Type != tmpfsMagic {
		return ""
	}
	if st.Bavail*uint64(st.Bsize) < memoryDirSpace {
		return ""
	}
	dir, err := os.MkdirTemp(memoryRoot, "shoes-scaleset-demo-instances-")
	if err != nil {
		return ""
	}
	return dir
}
