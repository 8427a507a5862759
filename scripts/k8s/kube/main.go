// One multicall binary for the test cluster (scripts/lib/k8s.sh builds it from the Go module
// proxy): kube <apiserver|controller-manager|scheduler|kubelet|proxy|etcd> [flags]. One link
// of the shared dependency graph instead of six keeps the cold compile near 20 minutes on
// two cores and the cache near 130 MB.
package main

import (
	"context"
	"fmt"
	"os"
	_ "time/tzdata"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	cm "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kube <apiserver|controller-manager|scheduler|kubelet|proxy|etcd> [flags]")
		os.Exit(2)
	}
	sub := os.Args[1]
	os.Args = append([]string{"kube-" + sub}, os.Args[2:]...)
	var c *cobra.Command
	switch sub {
	case "etcd":
		os.Args[0] = "etcd"
		etcdmain.Main(os.Args)
		return
	case "apiserver":
		c = apiserver.NewAPIServerCommand()
	case "controller-manager":
		c = cm.NewControllerManagerCommand()
	case "scheduler":
		c = scheduler.NewSchedulerCommand()
	case "kubelet":
		// the kubelet reads its own name from argv[0] for its component identity
		os.Args[0] = "kubelet"
		c = kubelet.NewKubeletCommand(context.Background())
	case "proxy":
		c = proxy.NewProxyCommand()
	default:
		fmt.Fprintln(os.Stderr, "unknown subcommand", sub)
		os.Exit(2)
	}
	c.SetArgs(os.Args[1:])
	os.Exit(cli.Run(c))
}
