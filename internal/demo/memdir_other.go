//go:build !linux

package demo

// memoryDir returns "": outside Linux the fake plugin's instances stay in
// the work directory.
func memoryDir() string { return "" }
