// CoreDNS for the local real nodes, built with only the plugins their
// Corefile uses: cluster.local answers from the API server, NXDOMAIN for
// every other name (pods must reach nothing outside this machine, so
// nothing is forwarded upstream), health and readiness endpoints.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/template"
)

// The order in which plugins handle a query, as in CoreDNS's plugin.cfg.
var directives = []string{
	"errors",
	"log",
	"health",
	"ready",
	"cache",
	"kubernetes",
	"template",
}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
