package main

import (
	"fmt"
	"io"
)

// runOperator runs an operator command (stub until the CLI lands).
func runOperator(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintf(stderr, "siterecovery: unknown command %q\n", args[0])
	return 2
}
