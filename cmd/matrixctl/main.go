// Command matrixctl qualifies kernel × distro × Docker × storage-driver
// combinations by booting each in its own VM and ranking what survives.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(Main(context.Background(), Streams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}, os.Args[1:]))
}
