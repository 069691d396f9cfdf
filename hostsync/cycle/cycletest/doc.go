// Package cycletest makes cycles for tests: random cycles of a VM's disks
// (Random, FillRandom) and an in-memory Model of the disks a cycle is
// applied to, to compare what a replica or an assembled cycle holds with what
// it should. Tests of the batch format and of the replica share it, as
// net/http/httptest serves the tests of net/http's users. It imports only
// hostsync/cycle and is imported by tests only.
package cycletest
