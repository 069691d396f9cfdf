// Package soak is `siterecovery soak`: the demo's world (package demo on
// package world) with many VMs for a set time, in cycles of random
// workloads, planned (and every Nth cycle unplanned) failovers and
// failbacks, the bytes checked at every step, and a summary at the end.
// The operator commands come from package main through Config.CLI.
package soak
