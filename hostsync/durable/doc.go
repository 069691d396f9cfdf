// Package durable writes files that survive a crash: write a temp file,
// fsync it, rename it over the target, fsync the directory (the pattern of
// hashicorp/raft's file_snapshot.go). The replica's state file, its
// recovery records and the source's hash tree files are written this way.
// It imports only the standard library.
package durable
