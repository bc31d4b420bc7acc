//! The two Services: a headless one giving each server a stable DNS name (peers dial it and the
//! operator reaches each admin API through it, also before the pod is ready), and the client
//! Service on 2181 spreading ZooKeeper clients over ready servers.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{client_ports, owned_meta, selector_labels, server_ports, Names};
use crate::crd::CoordinationCluster;

/// Label telling the two Services apart (the ServiceMonitor selects the peer Service).
pub const SERVICE_LABEL: &str = "paddock.dev/service";

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

/// The headless peer Service (`publishNotReadyAddresses`: a forming cluster's members are not
/// ready until they have found each other).
pub fn peer_service(cluster: &CoordinationCluster, names: &Names) -> Service {
    let mut metadata = owned_meta(cluster, names, names.peer_service());
    metadata.labels.get_or_insert_with(Default::default).insert(SERVICE_LABEL.to_owned(), "peers".to_owned());
    Service {
        metadata,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(names)),
            ports: Some(server_ports(cluster).into_iter().map(|(name, number)| port(name, number)).collect()),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The client Service (ZooKeeper's 2181 in clear text, 2281 with TLS; ready servers only).
pub fn client_service(cluster: &CoordinationCluster, names: &Names) -> Service {
    let mut metadata = owned_meta(cluster, names, names.client_service());
    metadata.labels.get_or_insert_with(Default::default).insert(SERVICE_LABEL.to_owned(), "client".to_owned());
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(names)),
            ports: Some(client_ports(cluster).into_iter().map(|(name, number)| port(name, number)).collect()),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
