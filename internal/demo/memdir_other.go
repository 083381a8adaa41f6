//go:build !linux

package demo

// MemoryDir returns "": outside Linux the fake plugin's instances stay in
// the work directory.
func MemoryDir() string { return "" }
