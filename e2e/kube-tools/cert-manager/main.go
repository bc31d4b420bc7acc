// Command cert-manager-controller is a trimmed-down cert-manager controller for Paddock's
// end-to-end tests: it lets a test install cert-manager's CRDs (deploy/crds/*.yaml in the
// github.com/cert-manager/cert-manager module) into the test control plane and have real
// cert-manager code issue Certificates from SelfSigned and CA Issuers/ClusterIssuers.
//
// Why this exists rather than cert-manager's own binary: upstream's `main` lives in
// cmd/controller, a separate Go module whose path (github.com/cert-manager/cert-manager/
// controller-binary) does not match its directory, so the Go module proxy cannot serve it, and
// our builds may use only the proxy. The controllers themselves, though, live in public packages
// of the root module (pkg/controller/...), each registering a constructor with
// pkg/controller.Register from an init function. This program imports the ones we need, builds
// the shared controller.ContextFactory through the public controller.NewContextFactory (the same
// entry point upstream uses), runs the constructors, and starts the shared informers. It imports
// no internal/ package of cert-manager, so it lives in its own module, paddock.dev/cert-manager-tool.
//
// Controllers run (upstream names): issuers, clusterissuers, certificaterequests-approver,
// certificaterequests-issuer-selfsigned, certificaterequests-issuer-ca, and the Certificate
// pipeline certificates-trigger, -key-manager, -request-manager, -issuing, -readiness and
// -revision-manager. Left out: ACME (orders, challenges, the ACME issuer), Vault, Venafi, the
// ingress/gateway shims, the Kubernetes CertificateSigningRequest signers, and cert-manager's
// webhook and cainjector, which are separate programs. An Issuer of a type left out here is
// reported as failing by the issuers controller; a Certificate that refers to it never issues.
// Feature gates are at cert-manager's defaults unless --feature-gates says otherwise.
//
// Usage:
//
//	cert-manager-controller --kubeconfig FILE [--cluster-resource-namespace cert-manager]
//	    [--namespace NS] [--metrics-listen-address 127.0.0.1:0] [--healthz-listen-address 127.0.0.1:0]
//	    [--leader-elect] [--workers 5] [--feature-gates Name=true,...] [-v 2]
//
// Metrics (/metrics) and health (/livez) are served only when their address is given; with port
// 0 the chosen address is logged ("listening" with the server's name and address). It watches
// every namespace unless --namespace is given, takes no lease unless --leader-elect is given, and
// stops on SIGINT or SIGTERM. It needs the CRDs installed, the cluster resource namespace to exist
// (ClusterIssuers read their CA Secrets there) and, under RBAC, the permissions in rbac.yaml
// next to this file (cert-manager.io resources and their status, secrets, events, and leases when
// leader election is on). No admission webhook runs, so nothing validates or defaults the
// cert-manager resources beyond what their CRD schemas do.
//
// Build (see scripts/kube-tools.sh for the conventions): go build -trimpath -ldflags "-s -w".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	"github.com/cert-manager/cert-manager/pkg/controller"
	crapprover "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"
	"github.com/cert-manager/cert-manager/pkg/healthz"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	utilfeature "github.com/cert-manager/cert-manager/pkg/util/feature"

	// The Issuer implementations the issuers and clusterissuers controllers may set up; each
	// registers itself with pkg/issuer from an init function.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// The controllers this program runs, by the names their packages register them under. Importing
// a package is what registers its controller; naming it here is what runs it.
var controllers = []string{
	issuers.ControllerName,
	clusterissuers.ControllerName,
	crapprover.ControllerName,
	crselfsigned.CRControllerName,
	crca.CRControllerName,
	trigger.ControllerName,
	keymanager.ControllerName,
	requestmanager.ControllerName,
	issuing.ControllerName,
	readiness.ControllerName,
	revisionmanager.ControllerName,
}

// Leader election timings, those of kube-controller-manager (upstream cert-manager uses
// 60s/40s/15s): a restarted controller takes over within about 15 seconds.
const (
	leaseDuration = 15 * time.Second
	renewDeadline = 10 * time.Second
	retryPeriod   = 2 * time.Second
	leaseName     = "cert-manager-controller"
)

type options struct {
	kubeconfig               string
	clusterResourceNamespace string
	namespace                string
	metricsAddress           string
	healthzAddress           string
	leaderElect              bool
	leaderElectionNamespace  string
	workers                  int
	qps                      float64
	burst                    int
	featureGates             string
}

func main() {
	var o options
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file to reach the API server with (its current context); empty: the in-cluster service account")
	flag.StringVar(&o.clusterResourceNamespace, "cluster-resource-namespace", "cert-manager", "namespace holding the Secrets ClusterIssuers refer to (it must exist)")
	flag.StringVar(&o.namespace, "namespace", "", "namespace to watch; empty: all namespaces")
	flag.StringVar(&o.metricsAddress, "metrics-listen-address", "", "host:port for Prometheus metrics at /metrics (port 0: any free port, logged); empty: off")
	flag.StringVar(&o.healthzAddress, "healthz-listen-address", "", "host:port for the liveness endpoint /livez (port 0: any free port, logged); empty: off")
	flag.BoolVar(&o.leaderElect, "leader-elect", false, "hold a Lease before running the controllers")
	flag.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader election Lease; empty: the cluster resource namespace")
	flag.IntVar(&o.workers, "workers", 5, "workers per controller")
	flag.Float64Var(&o.qps, "kube-api-qps", 20, "client-side rate limit, queries per second (unused when the API server has priority and fairness)")
	flag.IntVar(&o.burst, "kube-api-burst", 50, "client-side rate limit, burst")
	flag.StringVar(&o.featureGates, "feature-gates", "", "cert-manager controller feature gates, Name=true|false,... (default: cert-manager's defaults)")
	klog.InitFlags(nil)    // -v, -vmodule, ...
	_ = flag.Set("v", "2") // cert-manager logs what it does at level 2 (logf.InfoLevel)
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "cert-manager-controller: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}

	logf.InitLogs()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	ctx = logf.NewContext(ctx, logf.Log, "controller")
	err := run(ctx, o)
	stop()
	if err != nil {
		logf.Log.Error(err, "cert-manager-controller failed")
		logf.FlushLogs()
		os.Exit(1)
	}
	logf.FlushLogs()
}

func run(ctx context.Context, o options) error {
	log := logf.FromContext(ctx)
	if o.featureGates != "" {
		if err := utilfeature.DefaultMutableFeatureGate.Set(o.featureGates); err != nil {
			return fmt.Errorf("--feature-gates: %w", err)
		}
	}
	if o.workers < 1 {
		return errors.New("--workers must be at least 1")
	}
	known := controller.Known()
	for _, name := range controllers {
		if known[name] == nil {
			return fmt.Errorf("internal error: no controller registered as %q", name)
		}
	}

	// Everything runs in one group: the first to fail (or a signal) cancels ctx, which stops the
	// rest. fail stops what has started and waits for it, for errors met while starting.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	fail := func(err error) error {
		cancel()
		return errors.Join(err, g.Wait())
	}

	// The factory loads the kubeconfig, probes for API priority and fairness (client-side rate
	// limiting is used only without it), and makes the shared informer factories. Each
	// controller's constructor builds its own Context from it, with its own user agent.
	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig:         o.kubeconfig,
		KubernetesAPIQPS:   float32(o.qps),
		KubernetesAPIBurst: o.burst,
		Namespace:          o.namespace,
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace: o.clusterResourceNamespace,
			// Upstream's defaults; only ACME, Vault and Venafi issuers use ambient credentials.
			ClusterIssuerAmbientCredentials: true,
			IssuerAmbientCredentials:        false,
		},
		CertificateOptions: controller.CertificateOptions{
			// Upstream's defaults.
			EnableOwnerRef:                           false,
			CopiedAnnotationPrefixes:                 []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"},
			CertificateRequestMinimumBackoffDuration: time.Hour,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
		},
	})
	if err != nil {
		return fail(err)
	}
	base, err := factory.Build()
	if err != nil {
		return fail(err)
	}
	log.Info("starting cert-manager controller", "api_server", base.RESTConfig.Host,
		"namespace", o.namespace, "cluster_resource_namespace", o.clusterResourceNamespace, "controllers", controllers)

	if o.metricsAddress != "" {
		ln, err := listen(ctx, "metrics", o.metricsAddress)
		if err != nil {
			return fail(err)
		}
		cm := base.SharedInformerFactory.Certmanager().V1()
		base.Metrics.SetupCertificateCollector(cm.Certificates().Lister())
		base.Metrics.SetupIssuerCollector(cm.Issuers().Lister())
		base.Metrics.SetupClusterIssuerCollector(cm.ClusterIssuers().Lister())
		serve(ctx, g, base.Metrics.NewServer(ln), ln)
	}

	var health *healthz.Server
	if o.healthzAddress != "" {
		ln, err := listen(ctx, "healthz", o.healthzAddress)
		if err != nil {
			return fail(err)
		}
		health = healthz.NewServer(20 * time.Second)
		g.Go(func() error { return health.Start(ctx, ln) })
	}

	if o.leaderElect {
		if err := elect(ctx, g, factory, health, o); err != nil {
			return fail(err)
		}
		if ctx.Err() != nil { // stopped (or failed) before becoming leader
			return g.Wait()
		}
	}

	// Constructing a controller registers the informers it needs with the shared factories, so
	// every constructor runs before the factories start.
	for _, name := range controllers {
		c, err := known[name](factory)
		if err != nil {
			return fail(fmt.Errorf("controller %s: %w", name, err))
		}
		g.Go(func() error {
			// Run fails if ctx ends before its caches sync; that is a shutdown, not a failure.
			if err := c.Run(o.workers, ctx); err != nil && ctx.Err() == nil {
				return fmt.Errorf("controller %s: %w", name, err)
			}
			return nil
		})
	}
	base.SharedInformerFactory.Start(ctx.Done())
	base.KubeSharedInformerFactory.Start(ctx.Done())
	log.Info("controllers started")

	err = g.Wait()
	base.KubeSharedInformerFactory.Shutdown()
	base.SharedInformerFactory.Shutdown()
	return err
}

// listen opens a TCP listener and logs the address it got (port 0 picks a free one).
func listen(ctx context.Context, what, address string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", address)
	if err != nil {
		return nil, fmt.Errorf("%s server: %w", what, err)
	}
	logf.FromContext(ctx).Info("listening", "server", what, "address", ln.Addr().String())
	return ln, nil
}

// serve runs an HTTP server in the group until ctx ends, then gives it 5 seconds to finish.
func serve(ctx context.Context, g *errgroup.Group, srv *http.Server, ln net.Listener) {
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	})
}

// elect blocks until this process holds the Lease (or ctx ends), then keeps renewing it in the
// group; losing it fails the group, so the process exits rather than run unguarded.
func elect(ctx context.Context, g *errgroup.Group, factory *controller.ContextFactory, health *healthz.Server, o options) error {
	leCtx, err := factory.Build("leader-election")
	if err != nil {
		return err
	}
	host, err := os.Hostname()
	if err != nil {
		return err
	}
	namespace := o.leaderElectionNamespace
	if namespace == "" {
		namespace = o.clusterResourceNamespace
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, namespace, leaseName,
		leCtx.Client.CoreV1(), leCtx.Client.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: host + "_" + string(uuid.NewUUID()), EventRecorder: leCtx.Recorder})
	if err != nil {
		return fmt.Errorf("leader election lock: %w", err)
	}
	elected := make(chan struct{})
	config := leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   leaseDuration,
		RenewDeadline:   renewDeadline,
		RetryPeriod:     retryPeriod,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { close(elected) },
			OnStoppedLeading: func() {},
		},
	}
	if health != nil {
		config.WatchDog = health.LeaderHealthzAdaptor
	}
	le, err := leaderelection.NewLeaderElector(config)
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	logf.FromContext(ctx).Info("waiting for leader election", "lease", namespace+"/"+leaseName)
	g.Go(func() error {
		le.Run(ctx)
		if ctx.Err() == nil {
			return errors.New("leader election lost")
		}
		return nil
	})
	select {
	case <-elected:
	case <-ctx.Done():
	}
	return nil
}
