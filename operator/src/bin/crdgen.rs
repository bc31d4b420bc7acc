//! Prints the CoordinationCluster CRD as YAML; `crdgen > crds/coordinationclusters.paddock.dev.yaml`.
//! A test (`tests/crd`) fails when the committed file differs from this output.

fn main() {
    print!("{}", paddock_operator::crd::CoordinationCluster::crd_yaml());
}
