// Command standin serves the Topaz stand-in of oidcauth's tests on plain
// gRPC, by default with examples/topaz's policy and directory, so that the
// example can be tried without Topaz:
//
//	cd integration && go run ./topaz/cmd/standin        # 127.0.0.1:8282
//	TOPAZ_NO_TLS=true go run ./examples/topaz           # from the repository root
//
// It is a test stand-in (see package topaz), not Topaz: use Topaz itself
// for anything but trying things out.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/oidcauth/oidcauth/integration/topaz"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8282", "gRPC listen address")
	policy := flag.String("policy", "../examples/topaz/policy", "comma-separated directories of .rego files")
	data := flag.String("data", "../examples/topaz/directory", "comma-separated directories of Topaz import files (manifest.yaml, objects, relations)")
	flag.Parse()

	s, err := topaz.Start(topaz.Options{Addr: *addr, PolicyDirs: split(*policy), DataDirs: split(*data)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "standin:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "standin: Topaz stand-in (not Topaz) serving aserto.authorizer.v2.Authorizer on %s, plain gRPC (TOPAZ_NO_TLS=true)\n", s.Addr())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	s.Stop()
}

func split(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
