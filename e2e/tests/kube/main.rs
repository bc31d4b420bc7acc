//! Paddock on a real Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, kube-proxy and CoreDNS built from pinned module versions
//! (scripts/kube-tools.sh), in a network namespace of the test's own
//! (`paddock_testkit::kube`). What a mock API server cannot check is checked here: the CRD's
//! structural schema and CEL rules as the API server enforces them, printer columns, and (as the
//! scenarios grow) RBAC, server-side apply, the webhook over TLS, garbage collection and
//! cert-manager. Needs
//! root (network namespaces). Run with `--test-threads=1`.

mod harness;

mod cert_manager;
mod crd;
mod inject;
mod operator;
mod rolling;
mod scale;
mod tenancy;
mod tls;
