//! Checks one object on its own: names, addresses, ports, protocols,
//! selectors and the rules between a kind's fields, as the Kubernetes API
//! server (or the CRD's schema, for the network-policy-api kinds) would, and
//! Sluice's own rules for its kinds. Checks that need other objects (address
//! conflicts, references) are in [`super::state`].
//!
//! Every refusal names the object, the field path and what was expected.

use super::multus::{MultiNetworkPolicy, NetworkAttachmentDefinition};
use super::names::{self, Protocol};
use super::policy_api::{
    AdminAction, AdminNetworkPolicy, AdminPort, BaselineAdminNetworkPolicy, ClusterAction,
    ClusterNetworkPolicy, ClusterProtocol, EgressPeer, IngressPeer, NamespacedPod, Subject,
};
use super::selector::Selector;
use super::sluice::{
    chain_protocol, Bandwidth, BuiltinFunction, Chain, Interface, MulticastGroup, Neighbour,
    Network, NetworkService, NetworkServiceEndpoint, Payload, PortSpec, Route, RouteType, Steering,
    BACKENDS,
};
use super::{Kind, ModelError, Object};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::ops::RangeInclusive;

/// The ports a Service's nodePort may use (kube-apiserver's
/// `--service-node-port-range` default).
pub const NODE_PORT_RANGE: RangeInclusive<i32> = 30000..=32767;

/// The smallest and largest MTU an Interface may have (IPv4's minimum; a
/// common jumbo frame).
pub const MTU_RANGE: RangeInclusive<u32> = 68..=9216;

/// The largest burst the CNI bandwidth plugin accepts, in bits (4 GiB).
pub const MAX_BURST_BITS: u64 = (u32::MAX as u64) * 8;

type R = Result<(), ModelError>;

/// Checks `obj` on its own; the first problem found is returned.
pub fn validate(obj: &Object) -> R {
    let v = V {
        object: obj.key().to_string(),
    };
    v.metadata(obj.kind(), obj.metadata())?;
    match obj {
        Object::Namespace(o) => v.namespace(o),
        Object::Pod(o) => v.pod(o),
        Object::Node(o) => v.node(o),
        Object::Service(o) => v.service(o),
        Object::EndpointSlice(o) => v.endpoint_slice(o),
        Object::NetworkPolicy(o) => v.network_policy(o),
        Object::AdminNetworkPolicy(o) => v.admin_network_policy(o),
        Object::BaselineAdminNetworkPolicy(o) => v.baseline_admin_network_policy(o),
        Object::ClusterNetworkPolicy(o) => v.cluster_network_policy(o),
        Object::Interface(o) => v.interface(o),
        Object::Network(o) => v.network(o),
        Object::Route(o) => v.route(o),
        Object::Neighbour(o) => v.neighbour(o),
        Object::Bandwidth(o) => v.bandwidth(o),
        Object::NetworkService(o) => v.network_service(o),
        Object::NetworkServiceEndpoint(o) => v.network_service_endpoint(o),
        Object::Chain(o) => v.chain(o),
        Object::MulticastGroup(o) => v.multicast_group(o),
        Object::NetworkAttachmentDefinition(o) => v.network_attachment_definition(o),
        Object::MultiNetworkPolicy(o) => v.multi_network_policy(o),
    }
}

struct V {
    object: String,
}

fn opt<T>(o: &Option<Vec<T>>) -> &[T] {
    o.as_deref().unwrap_or(&[])
}

impl V {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ModelError {
        ModelError::new(self.object.clone(), field, message)
    }

    fn check<T>(&self, field: &str, r: Result<T, String>) -> Result<T, ModelError> {
        r.map_err(|m| self.err(field, m))
    }

    fn required(&self, field: &str, s: &str) -> R {
        if s.is_empty() {
            return Err(self.err(field, "required"));
        }
        Ok(())
    }

    fn max_items(&self, field: &str, len: usize, max: usize) -> R {
        if len > max {
            return Err(self.err(field, format!("must have at most {max} items, got {len}")));
        }
        Ok(())
    }

    fn min_items(&self, field: &str, len: usize, min: usize) -> R {
        if len < min {
            return Err(self.err(
                field,
                format!(
                    "must have at least {min} item{}",
                    if min == 1 { "" } else { "s" }
                ),
            ));
        }
        Ok(())
    }

    fn selector(&self, field: &str, sel: &LabelSelector) -> R {
        Selector::from_label_selector(sel)
            .map(|_| ())
            .map_err(|e| self.err(format!("{field}.{}", e.field), e.message))
    }

    fn label_map(&self, field: &str, map: &BTreeMap<String, String>) -> R {
        for (k, v) in map {
            let f = format!("{field}[{k}]");
            self.check(&f, names::label_key(k))?;
            self.check(&f, names::label_value(v))?;
        }
        Ok(())
    }

    fn protocol(&self, field: &str, p: Option<&str>) -> Result<Protocol, ModelError> {
        self.check(field, names::protocol(p.unwrap_or("TCP")))
    }

    fn port(&self, field: &str, p: i32) -> Result<u16, ModelError> {
        self.check(field, names::port_number(p))
    }

    /// A number 1-65535 or an IANA_SVC_NAME.
    fn int_or_name_port(&self, field: &str, p: &IntOrString) -> R {
        match p {
            IntOrString::Int(n) => self.port(field, *n).map(|_| ()),
            IntOrString::String(s) => {
                if let Ok(n) = s.parse::<i32>() {
                    return Err(self.err(
                        field,
                        format!("must be a number 1-65535 or an IANA_SVC_NAME, got the string {n:?}; write it without quotes"),
                    ));
                }
                self.check(field, names::iana_svc_name(s))
            }
        }
    }

    fn ip(&self, field: &str, s: &str) -> Result<IpAddr, ModelError> {
        self.check(field, names::ip(s))
    }

    fn cidr(&self, field: &str, s: &str) -> Result<IpNet, ModelError> {
        self.check(field, names::cidr(s))
    }

    /// At most one address per family, as dual-stack lists are.
    fn dual_stack_ips(&self, field: &str, ips: &[IpAddr]) -> R {
        self.max_items(field, ips.len(), 2)?;
        if ips.len() == 2 && ips[0].is_ipv4() == ips[1].is_ipv4() {
            return Err(self.err(
                format!("{field}[1]"),
                format!(
                    "a dual-stack list holds one address of each family; both are {}",
                    names::family(ips[0])
                ),
            ));
        }
        Ok(())
    }

    // ---- metadata ----

    fn metadata(&self, kind: Kind, meta: &ObjectMeta) -> R {
        let name = meta.name.as_deref().unwrap_or("");
        if name.is_empty() {
            return Err(self.err("metadata.name", "required"));
        }
        let r = match kind {
            Kind::Namespace | Kind::Interface | Kind::Network => names::dns1123_label(name),
            Kind::Service => names::dns1035_label(name),
            _ => names::dns1123_subdomain(name),
        };
        self.check("metadata.name", r)?;
        if kind == Kind::BaselineAdminNetworkPolicy && name != "default" {
            return Err(self.err(
                "metadata.name",
                format!("a BaselineAdminNetworkPolicy must be named \"default\", got {name:?}"),
            ));
        }
        match (&meta.namespace, kind.namespaced()) {
            (Some(ns), true) => self.check("metadata.namespace", names::dns1123_label(ns))?,
            (Some(ns), false) if !ns.is_empty() => {
                return Err(self.err(
                    "metadata.namespace",
                    format!("must not be set: {kind} is cluster-scoped, got {ns:?}"),
                ))
            }
            _ => {}
        }
        if let Some(labels) = &meta.labels {
            self.label_map("metadata.labels", labels)?;
        }
        if let Some(annotations) = &meta.annotations {
            let mut size = 0;
            for (k, v) in annotations {
                self.check(&format!("metadata.annotations[{k}]"), names::label_key(k))?;
                size += k.len() + v.len();
            }
            if size > 256 * 1024 {
                return Err(self.err(
                    "metadata.annotations",
                    format!("must total at most 256 KiB, got {size} bytes"),
                ));
            }
        }
        Ok(())
    }

    // ---- core/v1 ----

    fn namespace(&self, _ns: &Namespace) -> R {
        Ok(())
    }

    fn pod(&self, pod: &Pod) -> R {
        let Some(spec) = &pod.spec else {
            return Err(self.err("spec", "required"));
        };
        crate::bandwidth::pod_annotation_rates(pod)
            .map_err(|(field, message)| self.err(field, message))?;
        super::multus::pod_attachments(pod).map_err(|(field, message)| self.err(field, message))?;
        if let Some(node) = &spec.node_name {
            self.check("spec.nodeName", names::dns1123_subdomain(node))?;
        }
        let mut container_names = HashSet::new();
        let mut port_names = HashSet::new();
        self.min_items("spec.containers", spec.containers.len(), 1)?;
        let lists = [
            ("spec.initContainers", opt(&spec.init_containers)),
            ("spec.containers", &spec.containers[..]),
        ];
        for (list, containers) in lists {
            for (i, c) in containers.iter().enumerate() {
                let at = format!("{list}[{i}]");
                self.check(&format!("{at}.name"), names::dns1123_label(&c.name))?;
                if !container_names.insert(c.name.as_str()) {
                    return Err(self.err(
                        format!("{at}.name"),
                        format!("duplicate container name {:?}", c.name),
                    ));
                }
                for (j, p) in opt(&c.ports).iter().enumerate() {
                    let at = format!("{at}.ports[{j}]");
                    self.port(&format!("{at}.containerPort"), p.container_port)?;
                    if let Some(hp) = p.host_port.filter(|&hp| hp != 0) {
                        self.port(&format!("{at}.hostPort"), hp)?;
                    }
                    self.protocol(&format!("{at}.protocol"), p.protocol.as_deref())?;
                    if let Some(ip) = &p.host_ip {
                        self.ip(&format!("{at}.hostIP"), ip)?;
                    }
                    if let Some(name) = &p.name {
                        self.check(&format!("{at}.name"), names::iana_svc_name(name))?;
                        if !port_names.insert(name.as_str()) {
                            return Err(self.err(
                                format!("{at}.name"),
                                format!("duplicate port name {name:?} in this pod"),
                            ));
                        }
                    }
                }
            }
        }
        if let Some(status) = &pod.status {
            let pod_ips: Vec<IpAddr> = opt(&status.pod_ips)
                .iter()
                .enumerate()
                .map(|(i, p)| self.ip(&format!("status.podIPs[{i}].ip"), &p.ip))
                .collect::<Result<_, _>>()?;
            self.dual_stack_ips("status.podIPs", &pod_ips)?;
            if let Some(ip) = &status.pod_ip {
                let ip = self.ip("status.podIP", ip)?;
                if pod_ips.first().is_some_and(|first| *first != ip) {
                    return Err(self.err("status.podIP", "must equal status.podIPs[0]"));
                }
            }
            let host_ips: Vec<IpAddr> = opt(&status.host_ips)
                .iter()
                .enumerate()
                .map(|(i, p)| self.ip(&format!("status.hostIPs[{i}].ip"), &p.ip))
                .collect::<Result<_, _>>()?;
            self.dual_stack_ips("status.hostIPs", &host_ips)?;
            if let Some(ip) = &status.host_ip {
                self.ip("status.hostIP", ip)?;
            }
        }
        Ok(())
    }

    fn node(&self, node: &Node) -> R {
        if let Some(spec) = &node.spec {
            let cidrs: Vec<IpNet> = opt(&spec.pod_cidrs)
                .iter()
                .enumerate()
                .map(|(i, c)| self.cidr(&format!("spec.podCIDRs[{i}]"), c))
                .collect::<Result<_, _>>()?;
            let addrs: Vec<IpAddr> = cidrs.iter().map(|c| c.addr()).collect();
            self.dual_stack_ips("spec.podCIDRs", &addrs)?;
            if let Some(c) = &spec.pod_cidr {
                let c = self.cidr("spec.podCIDR", c)?;
                if cidrs.first().is_some_and(|first| *first != c) {
                    return Err(self.err("spec.podCIDR", "must equal spec.podCIDRs[0]"));
                }
            }
        }
        if let Some(status) = &node.status {
            for (i, a) in opt(&status.addresses).iter().enumerate() {
                let at = format!("status.addresses[{i}]");
                match a.type_.as_str() {
                    "InternalIP" | "ExternalIP" => {
                        self.ip(&format!("{at}.address"), &a.address)?;
                    }
                    "Hostname" | "InternalDNS" | "ExternalDNS" => {
                        self.check(&format!("{at}.address"), names::dns1123_subdomain(&a.address))?;
                    }
                    other => {
                        return Err(self.err(
                            format!("{at}.type"),
                            format!("must be one of InternalIP, ExternalIP, Hostname, InternalDNS, ExternalDNS, got {other:?}"),
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    fn one_of(&self, field: &str, value: &str, allowed: &[&str]) -> R {
        if allowed.contains(&value) {
            Ok(())
        } else {
            Err(self.err(
                field,
                format!("must be one of {}, got {value:?}", allowed.join(", ")),
            ))
        }
    }

    fn service(&self, svc: &Service) -> R {
        let Some(spec) = &svc.spec else {
            return Err(self.err("spec", "required"));
        };
        let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
        self.one_of(
            "spec.type",
            ty,
            &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"],
        )?;
        let cluster_ip = spec.cluster_ip.as_deref().unwrap_or("");
        let headless = cluster_ip == "None";

        // Addresses and families.
        let families: Vec<&str> = opt(&spec.ip_families).iter().map(String::as_str).collect();
        for (i, f) in families.iter().enumerate() {
            self.one_of(&format!("spec.ipFamilies[{i}]"), f, &["IPv4", "IPv6"])?;
        }
        self.max_items("spec.ipFamilies", families.len(), 2)?;
        if families.len() == 2 && families[0] == families[1] {
            return Err(self.err(
                "spec.ipFamilies[1]",
                format!("duplicate family {:?}", families[1]),
            ));
        }
        if let Some(p) = &spec.ip_family_policy {
            self.one_of(
                "spec.ipFamilyPolicy",
                p,
                &["SingleStack", "PreferDualStack", "RequireDualStack"],
            )?;
            if p == "SingleStack" && families.len() > 1 {
                return Err(self.err(
                    "spec.ipFamilies",
                    "must hold one family when ipFamilyPolicy is SingleStack",
                ));
            }
        }
        let cluster_ips: &[String] = opt(&spec.cluster_ips);
        self.max_items("spec.clusterIPs", cluster_ips.len(), 2)?;
        let mut parsed = Vec::new();
        for (i, s) in cluster_ips.iter().enumerate() {
            let f = format!("spec.clusterIPs[{i}]");
            if s == "None" {
                if cluster_ips.len() > 1 {
                    return Err(self.err(f, "\"None\" must be the only entry"));
                }
                continue;
            }
            self.required(&f, s)?;
            let ip = self.ip(&f, s)?;
            if let Some(fam) = families.get(i) {
                if *fam != names::family(ip) {
                    return Err(self.err(
                        f,
                        format!("must be an {fam} address to match spec.ipFamilies[{i}], got {s}"),
                    ));
                }
            }
            parsed.push(ip);
        }
        self.dual_stack_ips("spec.clusterIPs", &parsed)?;
        if spec.ip_family_policy.as_deref() == Some("SingleStack") && parsed.len() > 1 {
            return Err(self.err(
                "spec.clusterIPs",
                "must hold one address when ipFamilyPolicy is SingleStack",
            ));
        }
        if !cluster_ip.is_empty() && !headless {
            let ip = self.ip("spec.clusterIP", cluster_ip)?;
            if let Some(fam) = families.first().filter(|f| **f != names::family(ip)) {
                return Err(self.err(
                    "spec.clusterIP",
                    format!(
                        "must be an {fam} address to match spec.ipFamilies[0], got {cluster_ip}"
                    ),
                ));
            }
        }
        if let Some(first) = cluster_ips.first() {
            if !cluster_ip.is_empty() && first != cluster_ip {
                return Err(self.err(
                    "spec.clusterIPs[0]",
                    format!("must equal spec.clusterIP ({cluster_ip}), got {first}"),
                ));
            }
        }
        for (i, s) in opt(&spec.external_ips).iter().enumerate() {
            self.ip(&format!("spec.externalIPs[{i}]"), s)?;
        }
        if let Some(s) = spec.load_balancer_ip.as_deref().filter(|s| !s.is_empty()) {
            self.ip("spec.loadBalancerIP", s)?;
        }
        for (i, s) in opt(&spec.load_balancer_source_ranges).iter().enumerate() {
            self.cidr(&format!("spec.loadBalancerSourceRanges[{i}]"), s.trim())?;
        }
        if let Some(status) = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()) {
            for (i, ing) in opt(&status.ingress).iter().enumerate() {
                if let Some(ip) = &ing.ip {
                    self.ip(&format!("status.loadBalancer.ingress[{i}].ip"), ip)?;
                }
            }
        }

        if ty == "ExternalName" {
            let name = spec.external_name.as_deref().unwrap_or("");
            self.required("spec.externalName", name)?;
            self.check(
                "spec.externalName",
                names::dns1123_subdomain(name.trim_end_matches('.')),
            )?;
            if !cluster_ip.is_empty() && !headless {
                return Err(self.err(
                    "spec.clusterIP",
                    "must be empty for a Service of type ExternalName",
                ));
            }
        }
        if headless && ty != "ClusterIP" && ty != "ExternalName" {
            return Err(self.err(
                "spec.clusterIP",
                format!("\"None\" (headless) is only for type ClusterIP, got type {ty}"),
            ));
        }

        // Ports.
        let ports = opt(&spec.ports);
        if ports.is_empty() && !headless && ty != "ExternalName" {
            return Err(self.err("spec.ports", "required: at least one port"));
        }
        let mut seen_names = HashSet::new();
        let mut seen_ports = HashSet::new();
        let mut seen_node_ports = HashSet::new();
        for (i, p) in ports.iter().enumerate() {
            let at = format!("spec.ports[{i}]");
            match p.name.as_deref().filter(|n| !n.is_empty()) {
                Some(name) => {
                    self.check(&format!("{at}.name"), names::dns1123_label(name))?;
                    if !seen_names.insert(name) {
                        return Err(self.err(
                            format!("{at}.name"),
                            format!("duplicate port name {name:?}"),
                        ));
                    }
                }
                None if ports.len() > 1 => {
                    return Err(self.err(
                        format!("{at}.name"),
                        "required when a Service has more than one port",
                    ))
                }
                None => {}
            }
            let port = self.port(&format!("{at}.port"), p.port)?;
            let proto = self.protocol(&format!("{at}.protocol"), p.protocol.as_deref())?;
            if !seen_ports.insert((port, proto)) {
                return Err(self.err(
                    format!("{at}.port"),
                    format!("duplicate port {port}/{}", proto.as_str()),
                ));
            }
            if let Some(tp) = &p.target_port {
                self.int_or_name_port(&format!("{at}.targetPort"), tp)?;
            }
            if let Some(np) = p.node_port.filter(|&n| n != 0) {
                let f = format!("{at}.nodePort");
                if ty != "NodePort" && ty != "LoadBalancer" {
                    return Err(self.err(
                        f,
                        format!("may only be set for type NodePort or LoadBalancer, not {ty}"),
                    ));
                }
                if !NODE_PORT_RANGE.contains(&np) {
                    return Err(self.err(
                        f,
                        format!(
                            "must be in the node port range {}-{}, got {np}",
                            NODE_PORT_RANGE.start(),
                            NODE_PORT_RANGE.end()
                        ),
                    ));
                }
                if !seen_node_ports.insert((np, proto)) {
                    return Err(self.err(f, format!("duplicate nodePort {np}/{}", proto.as_str())));
                }
            }
            if let Some(ap) = &p.app_protocol {
                self.check(&format!("{at}.appProtocol"), names::label_key(ap))?;
            }
        }

        // Policies.
        if let Some(a) = &spec.session_affinity {
            self.one_of("spec.sessionAffinity", a, &["None", "ClientIP"])?;
        }
        if let Some(t) = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
        {
            if !(1..=86400).contains(&t) {
                return Err(self.err(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    format!("must be 1-86400, got {t}"),
                ));
            }
        }
        if let Some(p) = &spec.external_traffic_policy {
            self.one_of("spec.externalTrafficPolicy", p, &["Cluster", "Local"])?;
            if ty != "NodePort" && ty != "LoadBalancer" {
                return Err(self.err(
                    "spec.externalTrafficPolicy",
                    format!("may only be set for type NodePort or LoadBalancer, not {ty}"),
                ));
            }
        }
        if let Some(p) = &spec.internal_traffic_policy {
            self.one_of("spec.internalTrafficPolicy", p, &["Cluster", "Local"])?;
        }
        if let Some(d) = &spec.traffic_distribution {
            self.one_of(
                "spec.trafficDistribution",
                d,
                &["PreferClose", "PreferSameZone", "PreferSameNode"],
            )?;
        }
        if let Some(hc) = spec.health_check_node_port.filter(|&n| n != 0) {
            if !NODE_PORT_RANGE.contains(&hc) {
                return Err(self.err(
                    "spec.healthCheckNodePort",
                    format!(
                        "must be in the node port range {}-{}, got {hc}",
                        NODE_PORT_RANGE.start(),
                        NODE_PORT_RANGE.end()
                    ),
                ));
            }
        }
        if let Some(sel) = &spec.selector {
            self.label_map("spec.selector", sel)?;
        }
        Ok(())
    }

    // ---- discovery/v1 ----

    fn endpoint_slice(&self, es: &EndpointSlice) -> R {
        let ty = es.address_type.as_str();
        self.one_of("addressType", ty, &["IPv4", "IPv6", "FQDN"])?;
        for (i, ep) in opt(&es.endpoints).iter().enumerate() {
            let at = format!("endpoints[{i}]");
            self.min_items(&format!("{at}.addresses"), ep.addresses.len(), 1)?;
            self.max_items(&format!("{at}.addresses"), ep.addresses.len(), 100)?;
            for (j, a) in ep.addresses.iter().enumerate() {
                let f = format!("{at}.addresses[{j}]");
                if ty == "FQDN" {
                    self.check(&f, names::dns1123_subdomain(a))?;
                    continue;
                }
                let ip = self.ip(&f, a)?;
                if names::family(ip) != ty {
                    return Err(self.err(
                        f,
                        format!("must be an {ty} address to match addressType, got {a}"),
                    ));
                }
            }
            if let Some(n) = &ep.node_name {
                self.check(&format!("{at}.nodeName"), names::dns1123_subdomain(n))?;
            }
            if let Some(h) = &ep.hostname {
                self.check(&format!("{at}.hostname"), names::dns1123_label(h))?;
            }
            if let Some(z) = &ep.zone {
                self.check(&format!("{at}.zone"), names::label_value(z))?;
            }
            if let Some(h) = &ep.hints {
                for (j, z) in opt(&h.for_zones).iter().enumerate() {
                    self.required(&format!("{at}.hints.forZones[{j}].name"), &z.name)?;
                }
                for (j, n) in opt(&h.for_nodes).iter().enumerate() {
                    self.check(
                        &format!("{at}.hints.forNodes[{j}].name"),
                        names::dns1123_subdomain(&n.name),
                    )?;
                }
            }
        }
        let mut seen = HashSet::new();
        for (i, p) in opt(&es.ports).iter().enumerate() {
            let at = format!("ports[{i}]");
            if let Some(n) = p.port {
                self.port(&format!("{at}.port"), n)?;
            }
            self.protocol(&format!("{at}.protocol"), p.protocol.as_deref())?;
            let name = p.name.as_deref().unwrap_or("");
            if !name.is_empty() {
                self.check(&format!("{at}.name"), names::dns1123_label(name))?;
            }
            if !seen.insert(name) {
                return Err(self.err(
                    format!("{at}.name"),
                    format!("duplicate port name {name:?}"),
                ));
            }
            if let Some(ap) = &p.app_protocol {
                self.check(&format!("{at}.appProtocol"), names::label_key(ap))?;
            }
        }
        Ok(())
    }

    // ---- networking/v1 ----

    fn np_port(&self, at: &str, p: &NetworkPolicyPort) -> R {
        self.protocol(&format!("{at}.protocol"), p.protocol.as_deref())?;
        if let Some(port) = &p.port {
            self.int_or_name_port(&format!("{at}.port"), port)?;
        }
        if let Some(end) = p.end_port {
            let f = format!("{at}.endPort");
            let start = match &p.port {
                None => return Err(self.err(f, "may not be set without port")),
                Some(IntOrString::String(_)) => {
                    return Err(self.err(f, "may not be set when port is a named port"))
                }
                Some(IntOrString::Int(n)) => *n,
            };
            self.port(&f, end)?;
            if end < start {
                return Err(self.err(
                    f,
                    format!("must be greater than or equal to port ({start}), got {end}"),
                ));
            }
        }
        Ok(())
    }

    fn np_peer(&self, at: &str, peer: &NetworkPolicyPeer) -> R {
        if let Some(b) = &peer.ip_block {
            if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
                return Err(self.err(
                    at,
                    "ipBlock may not be combined with podSelector or namespaceSelector",
                ));
            }
            let f = format!("{at}.ipBlock.cidr");
            self.required(&f, &b.cidr)?;
            let cidr = self.cidr(&f, &b.cidr)?;
            for (i, e) in opt(&b.except).iter().enumerate() {
                let f = format!("{at}.ipBlock.except[{i}]");
                let ex = self.cidr(&f, e)?;
                if !cidr.trunc().contains(&ex.network()) || ex.prefix_len() <= cidr.prefix_len() {
                    return Err(self.err(
                        f,
                        format!("must be a strict subset of cidr {}, got {e}", b.cidr),
                    ));
                }
            }
            return Ok(());
        }
        if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
            return Err(self.err(
                at,
                "must set at least one of podSelector, namespaceSelector or ipBlock",
            ));
        }
        if let Some(s) = &peer.pod_selector {
            self.selector(&format!("{at}.podSelector"), s)?;
        }
        if let Some(s) = &peer.namespace_selector {
            self.selector(&format!("{at}.namespaceSelector"), s)?;
        }
        Ok(())
    }

    fn network_policy(&self, np: &NetworkPolicy) -> R {
        match &np.spec {
            Some(spec) => self.network_policy_spec(spec),
            None => Ok(()),
        }
    }

    /// A NetworkPolicy spec that applies to the attachments through the
    /// definitions its policy-for annotation names (which need not exist
    /// yet: the policy takes effect when they do).
    fn multi_network_policy(&self, mnp: &MultiNetworkPolicy) -> R {
        super::multus::policy_networks(mnp).map_err(|(field, message)| self.err(field, message))?;
        self.network_policy_spec(&mnp.spec)
    }

    fn network_policy_spec(&self, spec: &k8s_openapi::api::networking::v1::NetworkPolicySpec) -> R {
        if let Some(s) = &spec.pod_selector {
            self.selector("spec.podSelector", s)?;
        }
        let types = opt(&spec.policy_types);
        self.max_items("spec.policyTypes", types.len(), 2)?;
        for (i, t) in types.iter().enumerate() {
            self.one_of(&format!("spec.policyTypes[{i}]"), t, &["Ingress", "Egress"])?;
            if types[..i].contains(t) {
                return Err(self.err(format!("spec.policyTypes[{i}]"), format!("duplicate {t:?}")));
            }
        }
        for (i, rule) in opt(&spec.ingress).iter().enumerate() {
            for (j, p) in opt(&rule.ports).iter().enumerate() {
                self.np_port(&format!("spec.ingress[{i}].ports[{j}]"), p)?;
            }
            for (j, peer) in opt(&rule.from).iter().enumerate() {
                self.np_peer(&format!("spec.ingress[{i}].from[{j}]"), peer)?;
            }
        }
        for (i, rule) in opt(&spec.egress).iter().enumerate() {
            for (j, p) in opt(&rule.ports).iter().enumerate() {
                self.np_port(&format!("spec.egress[{i}].ports[{j}]"), p)?;
            }
            for (j, peer) in opt(&rule.to).iter().enumerate() {
                self.np_peer(&format!("spec.egress[{i}].to[{j}]"), peer)?;
            }
        }
        Ok(())
    }

    // ---- policy.networking.k8s.io ----

    fn priority(&self, p: i32) -> R {
        if !(0..=1000).contains(&p) {
            return Err(self.err("spec.priority", format!("must be 0-1000, got {p}")));
        }
        Ok(())
    }

    fn exactly_one(&self, field: &str, set: &[(&str, bool)]) -> R {
        let n = set.iter().filter(|(_, s)| *s).count();
        if n != 1 {
            let all: Vec<&str> = set.iter().map(|(name, _)| *name).collect();
            return Err(self.err(
                field,
                format!("exactly one of {} must be set, got {n}", all.join(", ")),
            ));
        }
        Ok(())
    }

    fn namespaced_pod(&self, at: &str, p: &NamespacedPod) -> R {
        self.selector(&format!("{at}.namespaceSelector"), &p.namespace_selector)?;
        self.selector(&format!("{at}.podSelector"), &p.pod_selector)
    }

    fn subject(&self, s: &Subject) -> R {
        self.exactly_one(
            "spec.subject",
            &[
                ("namespaces", s.namespaces.is_some()),
                ("pods", s.pods.is_some()),
            ],
        )?;
        if let Some(n) = &s.namespaces {
            self.selector("spec.subject.namespaces", n)?;
        }
        if let Some(p) = &s.pods {
            self.namespaced_pod("spec.subject.pods", p)?;
        }
        Ok(())
    }

    fn rule_name(&self, at: &str, name: &Option<String>) -> R {
        if let Some(n) = name {
            if n.chars().count() > 100 {
                return Err(self.err(
                    format!("{at}.name"),
                    format!("must be at most 100 characters, got {}", n.chars().count()),
                ));
            }
        }
        Ok(())
    }

    fn ingress_peers(&self, at: &str, peers: &[IngressPeer], max: usize) -> R {
        self.min_items(at, peers.len(), 1)?;
        self.max_items(at, peers.len(), max)?;
        for (i, p) in peers.iter().enumerate() {
            let at = format!("{at}[{i}]");
            self.exactly_one(
                &at,
                &[
                    ("namespaces", p.namespaces.is_some()),
                    ("pods", p.pods.is_some()),
                ],
            )?;
            if let Some(n) = &p.namespaces {
                self.selector(&format!("{at}.namespaces"), n)?;
            }
            if let Some(pods) = &p.pods {
                self.namespaced_pod(&format!("{at}.pods"), pods)?;
            }
        }
        Ok(())
    }

    /// Checks one egress peer's fields; `domain_names` is None for kinds that
    /// have no such field.
    #[allow(clippy::too_many_arguments)]
    fn egress_peer(
        &self,
        at: &str,
        namespaces: &Option<LabelSelector>,
        pods: &Option<NamespacedPod>,
        nodes: &Option<LabelSelector>,
        networks: &Option<Vec<String>>,
        domain_names: Option<&Option<Vec<String>>>,
        action_allows: bool,
    ) -> R {
        let has_domains = domain_names.is_some_and(Option::is_some);
        self.exactly_one(
            at,
            &[
                ("namespaces", namespaces.is_some()),
                ("pods", pods.is_some()),
                ("nodes", nodes.is_some()),
                ("networks", networks.is_some()),
                ("domainNames", has_domains),
            ][..if domain_names.is_some() { 5 } else { 4 }],
        )?;
        if let Some(n) = namespaces {
            self.selector(&format!("{at}.namespaces"), n)?;
        }
        if let Some(p) = pods {
            self.namespaced_pod(&format!("{at}.pods"), p)?;
        }
        if let Some(n) = nodes {
            self.selector(&format!("{at}.nodes"), n)?;
        }
        if let Some(nets) = networks {
            let f = format!("{at}.networks");
            self.min_items(&f, nets.len(), 1)?;
            self.max_items(&f, nets.len(), 25)?;
            for (i, n) in nets.iter().enumerate() {
                self.cidr(&format!("{f}[{i}]"), n)?;
            }
        }
        if let Some(Some(domains)) = domain_names {
            let f = format!("{at}.domainNames");
            self.min_items(&f, domains.len(), 1)?;
            self.max_items(&f, domains.len(), 25)?;
            for (i, d) in domains.iter().enumerate() {
                self.check(&format!("{f}[{i}]"), domain_name(d))?;
            }
            if !action_allows {
                return Err(self.err(
                    f,
                    "domainNames peers are only supported in Allow/Accept rules",
                ));
            }
        }
        Ok(())
    }

    fn egress_peers(&self, at: &str, peers: &[EgressPeer], allows: bool, max: usize) -> R {
        self.min_items(at, peers.len(), 1)?;
        self.max_items(at, peers.len(), max)?;
        for (i, p) in peers.iter().enumerate() {
            self.egress_peer(
                &format!("{at}[{i}]"),
                &p.namespaces,
                &p.pods,
                &p.nodes,
                &p.networks,
                Some(&p.domain_names),
                allows,
            )?;
        }
        Ok(())
    }

    fn admin_ports(&self, at: &str, ports: &Option<Vec<AdminPort>>) -> R {
        let Some(ports) = ports else { return Ok(()) };
        self.min_items(at, ports.len(), 1)?;
        self.max_items(at, ports.len(), 100)?;
        for (i, p) in ports.iter().enumerate() {
            let at = format!("{at}[{i}]");
            self.exactly_one(
                &at,
                &[
                    ("portNumber", p.port_number.is_some()),
                    ("namedPort", p.named_port.is_some()),
                    ("portRange", p.port_range.is_some()),
                ],
            )?;
            if let Some(n) = &p.port_number {
                self.protocol(&format!("{at}.portNumber.protocol"), n.protocol.as_deref())?;
                self.port(&format!("{at}.portNumber.port"), n.port)?;
            }
            if let Some(n) = &p.named_port {
                self.check(&format!("{at}.namedPort"), names::iana_svc_name(n))?;
            }
            if let Some(r) = &p.port_range {
                self.protocol(&format!("{at}.portRange.protocol"), r.protocol.as_deref())?;
                self.port_range(&format!("{at}.portRange"), r.start, r.end)?;
            }
        }
        Ok(())
    }

    fn port_range(&self, at: &str, start: i32, end: i32) -> R {
        self.port(&format!("{at}.start"), start)?;
        self.port(&format!("{at}.end"), end)?;
        if start >= end {
            return Err(self.err(
                format!("{at}.end"),
                format!("must be greater than start ({start}), got {end}"),
            ));
        }
        Ok(())
    }

    /// Named ports exist only on pods: a rule that names one may not also
    /// reach nodes, networks or domain names.
    fn named_ports_need_pods(&self, at: &str, named: bool, non_pod_peer: Option<usize>) -> R {
        if let (true, Some(i)) = (named, non_pod_peer) {
            return Err(self.err(
                format!("{at}.to[{i}]"),
                "networks, nodes and domainNames peers cannot be used with named ports",
            ));
        }
        Ok(())
    }

    fn admin_network_policy(&self, anp: &AdminNetworkPolicy) -> R {
        let spec = &anp.spec;
        self.priority(spec.priority)?;
        self.subject(&spec.subject)?;
        let ingress = opt(&spec.ingress);
        let egress = opt(&spec.egress);
        self.max_items("spec.ingress", ingress.len(), 100)?;
        self.max_items("spec.egress", egress.len(), 100)?;
        for (i, r) in ingress.iter().enumerate() {
            let at = format!("spec.ingress[{i}]");
            self.rule_name(&at, &r.name)?;
            self.ingress_peers(&format!("{at}.from"), &r.from, 100)?;
            self.admin_ports(&format!("{at}.ports"), &r.ports)?;
        }
        for (i, r) in egress.iter().enumerate() {
            let at = format!("spec.egress[{i}]");
            self.rule_name(&at, &r.name)?;
            self.egress_peers(
                &format!("{at}.to"),
                &r.to,
                r.action == AdminAction::Allow,
                100,
            )?;
            self.admin_ports(&format!("{at}.ports"), &r.ports)?;
            let named = opt(&r.ports).iter().any(|p| p.named_port.is_some());
            let non_pod = r.to.iter().position(|p| {
                p.nodes.is_some() || p.networks.is_some() || p.domain_names.is_some()
            });
            self.named_ports_need_pods(&at, named, non_pod)?;
        }
        Ok(())
    }

    fn baseline_admin_network_policy(&self, banp: &BaselineAdminNetworkPolicy) -> R {
        let spec = &banp.spec;
        self.subject(&spec.subject)?;
        let ingress = opt(&spec.ingress);
        let egress = opt(&spec.egress);
        self.max_items("spec.ingress", ingress.len(), 100)?;
        self.max_items("spec.egress", egress.len(), 100)?;
        for (i, r) in ingress.iter().enumerate() {
            let at = format!("spec.ingress[{i}]");
            self.rule_name(&at, &r.name)?;
            self.ingress_peers(&format!("{at}.from"), &r.from, 100)?;
            self.admin_ports(&format!("{at}.ports"), &r.ports)?;
        }
        for (i, r) in egress.iter().enumerate() {
            let at = format!("spec.egress[{i}]");
            self.rule_name(&at, &r.name)?;
            let to = format!("{at}.to");
            self.min_items(&to, r.to.len(), 1)?;
            self.max_items(&to, r.to.len(), 100)?;
            for (j, p) in r.to.iter().enumerate() {
                self.egress_peer(
                    &format!("{to}[{j}]"),
                    &p.namespaces,
                    &p.pods,
                    &p.nodes,
                    &p.networks,
                    None,
                    true,
                )?;
            }
            self.admin_ports(&format!("{at}.ports"), &r.ports)?;
            let named = opt(&r.ports).iter().any(|p| p.named_port.is_some());
            let non_pod =
                r.to.iter()
                    .position(|p| p.nodes.is_some() || p.networks.is_some());
            self.named_ports_need_pods(&at, named, non_pod)?;
        }
        Ok(())
    }

    fn cluster_protocols(&self, at: &str, protocols: &Option<Vec<ClusterProtocol>>) -> R {
        let Some(list) = protocols else { return Ok(()) };
        self.min_items(at, list.len(), 1)?;
        self.max_items(at, list.len(), 25)?;
        for (i, p) in list.iter().enumerate() {
            let at = format!("{at}[{i}]");
            self.exactly_one(
                &at,
                &[
                    ("tcp", p.tcp.is_some()),
                    ("udp", p.udp.is_some()),
                    ("sctp", p.sctp.is_some()),
                    ("destinationNamedPort", p.destination_named_port.is_some()),
                ],
            )?;
            for (name, ports) in [("tcp", &p.tcp), ("udp", &p.udp), ("sctp", &p.sctp)] {
                let Some(ports) = ports else { continue };
                let f = format!("{at}.{name}.destinationPort");
                let Some(dp) = &ports.destination_port else {
                    return Err(self.err(f, "required"));
                };
                self.exactly_one(
                    &f,
                    &[
                        ("number", dp.number.is_some()),
                        ("range", dp.range.is_some()),
                    ],
                )?;
                if let Some(n) = dp.number {
                    self.port(&format!("{f}.number"), n)?;
                }
                if let Some(r) = &dp.range {
                    self.port_range(&format!("{f}.range"), r.start, r.end)?;
                }
            }
            if let Some(n) = &p.destination_named_port {
                self.check(
                    &format!("{at}.destinationNamedPort"),
                    names::iana_svc_name(n),
                )?;
            }
        }
        Ok(())
    }

    fn cluster_network_policy(&self, cnp: &ClusterNetworkPolicy) -> R {
        let spec = &cnp.spec;
        self.priority(spec.priority)?;
        self.subject(&spec.subject)?;
        let ingress = opt(&spec.ingress);
        let egress = opt(&spec.egress);
        self.max_items("spec.ingress", ingress.len(), 25)?;
        self.max_items("spec.egress", egress.len(), 25)?;
        for (i, r) in ingress.iter().enumerate() {
            let at = format!("spec.ingress[{i}]");
            self.rule_name(&at, &r.name)?;
            self.ingress_peers(&format!("{at}.from"), &r.from, 25)?;
            self.cluster_protocols(&format!("{at}.protocols"), &r.protocols)?;
        }
        for (i, r) in egress.iter().enumerate() {
            let at = format!("spec.egress[{i}]");
            self.rule_name(&at, &r.name)?;
            self.egress_peers(
                &format!("{at}.to"),
                &r.to,
                r.action == ClusterAction::Accept,
                25,
            )?;
            self.cluster_protocols(&format!("{at}.protocols"), &r.protocols)?;
            let named = opt(&r.protocols)
                .iter()
                .any(|p| p.destination_named_port.is_some());
            let non_pod = r.to.iter().position(|p| {
                p.nodes.is_some() || p.networks.is_some() || p.domain_names.is_some()
            });
            self.named_ports_need_pods(&at, named, non_pod)?;
        }
        Ok(())
    }

    // ---- sluice.dev/v1 ----

    fn network_name(&self, field: &str, name: &str) -> R {
        self.required(field, name)?;
        self.check(field, names::dns1123_label(name))
    }

    fn interface_name(&self, field: &str, name: &str) -> R {
        self.required(field, name)?;
        self.check(field, names::dns1123_label(name))
    }

    fn unicast_mac(&self, field: &str, mac: super::MacAddr) -> R {
        if mac.is_zero() || mac.is_multicast() {
            return Err(self.err(
                field,
                format!("must be a unicast address (not zero, low bit of the first octet clear), got {mac}"),
            ));
        }
        Ok(())
    }

    /// An address a host can have: not unspecified, multicast or loopback.
    fn host_ip(&self, field: &str, ip: IpAddr) -> R {
        if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
            return Err(self.err(
                field,
                format!(
                    "must be a unicast address (not unspecified, multicast or loopback), got {ip}"
                ),
            ));
        }
        if let IpAddr::V4(a) = ip {
            if a.is_broadcast() {
                return Err(self.err(
                    field,
                    format!("must not be the broadcast address, got {ip}"),
                ));
            }
        }
        Ok(())
    }

    fn interface(&self, i: &Interface) -> R {
        let s = &i.spec;
        let f = "spec.backend";
        self.required(f, &s.backend)?;
        let Some((backend, arg)) = s.backend_parts() else {
            return Err(self.err(
                f,
                format!(
                    "must be <backend>:<argument> such as mem:a or af_xdp:eth0, got {:?}",
                    s.backend
                ),
            ));
        };
        if !BACKENDS.contains(&backend) {
            return Err(self.err(
                f,
                format!(
                    "unknown backend {backend:?}; expected one of {}",
                    BACKENDS.join(", ")
                ),
            ));
        }
        if arg.is_empty() || arg.chars().any(char::is_whitespace) {
            return Err(self.err(
                f,
                format!("the argument after '{backend}:' must be non-empty and without spaces, got {arg:?}"),
            ));
        }
        self.unicast_mac("spec.mac", s.mac)?;
        if let Some(mtu) = s.mtu {
            if !MTU_RANGE.contains(&mtu) {
                return Err(self.err(
                    "spec.mtu",
                    format!(
                        "must be {}-{}, got {mtu}",
                        MTU_RANGE.start(),
                        MTU_RANGE.end()
                    ),
                ));
            }
        }
        self.network_name("spec.network", &s.network)?;
        for (n, a) in s.addresses.iter().enumerate() {
            let f = format!("spec.addresses[{n}]");
            self.host_ip(&f, a.addr())?;
            if let IpNet::V4(v4) = a {
                if v4.prefix_len() < 31
                    && (v4.addr() == v4.network() || v4.addr() == v4.broadcast())
                {
                    return Err(self.err(
                        f,
                        format!("{a} is the subnet's network or broadcast address; give the interface's own address, e.g. {}/{}", v4.hosts().next().map(|h| h.to_string()).unwrap_or_default(), v4.prefix_len()),
                    ));
                }
            }
            if s.addresses[..n].iter().any(|b| b.addr() == a.addr()) {
                return Err(self.err(f, format!("duplicate address {}", a.addr())));
            }
        }
        Ok(())
    }

    fn network(&self, n: &Network) -> R {
        if let Some(d) = &n.spec.description {
            if d.len() > 1024 {
                return Err(self.err("spec.description", "must be at most 1024 bytes"));
            }
        }
        Ok(())
    }

    fn route(&self, r: &Route) -> R {
        let s = &r.spec;
        self.network_name("spec.network", &s.network)?;
        let dest = s.destination;
        if dest.trunc() != dest {
            return Err(self.err(
                "spec.destination",
                format!("host bits must be zero: did you mean {}?", dest.trunc()),
            ));
        }
        if s.route_type != RouteType::Unicast {
            if !s.next_hops.is_empty() {
                return Err(self.err(
                    "spec.nextHops",
                    format!("must be empty for a route of type {:?}", s.route_type),
                ));
            }
            return Ok(());
        }
        self.min_items("spec.nextHops", s.next_hops.len(), 1)?;
        self.max_items("spec.nextHops", s.next_hops.len(), u16::MAX as usize)?;
        for (i, h) in s.next_hops.iter().enumerate() {
            let at = format!("spec.nextHops[{i}]");
            if h.gateway.is_none() && h.interface.is_none() {
                return Err(self.err(at, "must set gateway, interface or both"));
            }
            if let Some(gw) = h.gateway {
                let f = format!("{at}.gateway");
                self.host_ip(&f, gw)?;
                if gw.is_ipv4() != dest.addr().is_ipv4() {
                    return Err(self.err(
                        f,
                        format!(
                            "must be an {} address like the destination {dest}, got {gw}",
                            names::family(dest.addr())
                        ),
                    ));
                }
            }
            if let Some(ifname) = &h.interface {
                self.interface_name(&format!("{at}.interface"), ifname)?;
            }
            if s.next_hops[..i].contains(h) {
                return Err(self.err(at, "duplicate next hop"));
            }
        }
        Ok(())
    }

    fn neighbour(&self, n: &Neighbour) -> R {
        self.network_name("spec.network", &n.spec.network)?;
        self.host_ip("spec.ip", n.spec.ip)?;
        self.unicast_mac("spec.mac", n.spec.mac)
    }

    fn rate_and_burst(&self, dir: &str, rate: Option<u64>, burst: Option<u64>) -> R {
        let rate_f = format!("spec.{dir}Rate");
        let burst_f = format!("spec.{dir}Burst");
        match (rate, burst) {
            (None, None) => Ok(()),
            (Some(_), None) => Err(self.err(burst_f, format!("required when {dir}Rate is set"))),
            (None, Some(_)) => Err(self.err(rate_f, format!("required when {dir}Burst is set"))),
            (Some(0), _) => Err(self.err(
                rate_f,
                "must be greater than 0 bits/s (omit rate and burst for no limit)",
            )),
            (_, Some(0)) => Err(self.err(burst_f, "must be greater than 0 bits")),
            (_, Some(b)) if b > MAX_BURST_BITS => Err(self.err(
                burst_f,
                format!("must be at most {MAX_BURST_BITS} bits (4 GiB), got {b}"),
            )),
            _ => Ok(()),
        }
    }

    fn bandwidth(&self, b: &Bandwidth) -> R {
        let s = &b.spec;
        self.exactly_one(
            "spec",
            &[
                ("podSelector", s.pod_selector.is_some()),
                ("pod", s.pod.is_some()),
            ],
        )?;
        if let Some(sel) = &s.pod_selector {
            self.selector("spec.podSelector", sel)?;
        }
        if let Some(p) = &s.pod {
            self.required("spec.pod.name", &p.name)?;
            self.check("spec.pod.name", names::dns1123_subdomain(&p.name))?;
        }
        self.rate_and_burst("ingress", s.ingress_rate, s.ingress_burst)?;
        self.rate_and_burst("egress", s.egress_rate, s.egress_burst)?;
        if s.ingress_rate.is_none() && s.egress_rate.is_none() {
            return Err(self.err(
                "spec",
                "must limit at least one direction (ingressRate and ingressBurst, or egressRate and egressBurst)",
            ));
        }
        Ok(())
    }

    fn nsm_labels(&self, field: &str, map: &BTreeMap<String, String>) -> R {
        // Values may be templates ({{.nodeName}}): only keys are checked.
        for k in map.keys() {
            self.check(&format!("{field}[{k}]"), names::label_key(k))?;
        }
        Ok(())
    }

    fn chain_ports(&self, field: &str, proto: Option<&str>, ports: &[PortSpec]) -> R {
        if ports.is_empty() {
            return Ok(());
        }
        let has_ports = matches!(proto.map(chain_protocol), Some(Ok(6 | 17 | 132)));
        if !has_ports {
            return Err(self.err(field, "ports need a protocol with ports (TCP, UDP or SCTP)"));
        }
        for (i, p) in ports.iter().enumerate() {
            let f = format!("{field}[{i}]");
            if p.port == 0 {
                return Err(self.err(format!("{f}.port"), "must be 1-65535"));
            }
            if let Some(e) = p.end_port {
                if e < p.port {
                    return Err(self.err(
                        format!("{f}.endPort"),
                        format!("must be at least port ({}), got {e}", p.port),
                    ));
                }
            }
        }
        Ok(())
    }

    fn steering(&self, field: &str, st: &[Steering]) -> R {
        for (i, s) in st.iter().enumerate() {
            let f = format!("{field}[{i}]");
            if let Some(n) = &s.network {
                self.network_name(&format!("{f}.network"), n)?;
            }
            if let Some(n) = &s.interface {
                self.interface_name(&format!("{f}.interface"), n)?;
            }
            if let Some(sel) = &s.pod_selector {
                self.selector(&format!("{f}.podSelector"), sel)?;
            }
            if let Some(sel) = &s.namespace_selector {
                if s.pod_selector.is_none() {
                    return Err(self.err(
                        format!("{f}.namespaceSelector"),
                        "selects the namespaces of podSelector's pods; set podSelector too",
                    ));
                }
                self.selector(&format!("{f}.namespaceSelector"), sel)?;
            }
            if s.pod_selector.is_some() && !s.source.is_empty() {
                return Err(self.err(
                    format!("{f}.source"),
                    "either podSelector or source, not both (pods are sources)",
                ));
            }
            if s.pod_selector.is_some() && !s.labels.is_empty() {
                return Err(self.err(
                    format!("{f}.labels"),
                    "pods are matched with their own labels; labels are for clients that are not pods",
                ));
            }
            self.nets(&format!("{f}.source"), &s.source)?;
            self.nets(&format!("{f}.destination"), &s.destination)?;
            if let Some(p) = &s.protocol {
                self.check(&format!("{f}.protocol"), chain_protocol(p))?;
            }
            self.chain_ports(&format!("{f}.ports"), s.protocol.as_deref(), &s.ports)?;
            self.nsm_labels(&format!("{f}.labels"), &s.labels)?;
            if s.network.is_none()
                && s.interface.is_none()
                && s.pod_selector.is_none()
                && s.source.is_empty()
                && s.destination.is_empty()
            {
                return Err(self.err(
                    f,
                    "must say which traffic: set network, interface, podSelector, source or destination",
                ));
            }
        }
        Ok(())
    }

    fn nets(&self, field: &str, nets: &[IpNet]) -> R {
        for (i, n) in nets.iter().enumerate() {
            if n.trunc() != *n {
                return Err(self.err(
                    format!("{field}[{i}]"),
                    format!("host bits must be zero: {} not {n}", n.trunc()),
                ));
            }
        }
        Ok(())
    }

    /// What an ETHERNET chain needs (an exit, one entry interface on every
    /// steering rule) and what only it may have.
    fn payload(&self, payload: Payload, exit: Option<&str>, st: &[Steering]) -> R {
        if payload == Payload::Ip {
            if exit.is_some() {
                return Err(self.err(
                    "spec.exit",
                    "only for payload ETHERNET (an IP chain's traffic is routed when it ends)",
                ));
            }
            for (i, s) in st.iter().enumerate() {
                let l2 = [
                    ("vlan", s.vlan.is_some()),
                    ("etherType", s.ether_type.is_some()),
                    ("sourceMac", s.source_mac.is_some()),
                    ("destinationMac", s.destination_mac.is_some()),
                ];
                if let Some((name, _)) = l2.iter().find(|(_, set)| *set) {
                    return Err(self.err(
                        format!("spec.steering[{i}].{name}"),
                        "only for payload ETHERNET",
                    ));
                }
            }
            return Ok(());
        }
        let Some(exit) = exit else {
            return Err(self.err(
                "spec.exit",
                "required for payload ETHERNET: the Interface frames leave on",
            ));
        };
        self.interface_name("spec.exit", exit)?;
        self.min_items("spec.steering", st.len(), 1)?;
        for (i, s) in st.iter().enumerate() {
            let f = format!("spec.steering[{i}]");
            let Some(entry) = &s.interface else {
                return Err(self.err(
                    format!("{f}.interface"),
                    "required for payload ETHERNET: the Interface frames enter the chain on",
                ));
            };
            if s.network.is_some() {
                return Err(self.err(
                    format!("{f}.network"),
                    "not for payload ETHERNET: the interface says where frames come in",
                ));
            }
            if entry == exit {
                return Err(self.err(
                    format!("{f}.interface"),
                    format!("must differ from spec.exit ({exit:?}): a chain runs between two interfaces"),
                ));
            }
            if let Some(first) = &st[0].interface {
                if entry != first {
                    return Err(self.err(
                        format!("{f}.interface"),
                        format!("an ETHERNET chain has one entry; spec.steering[0] says {first:?}"),
                    ));
                }
            }
            if let Some(v) = s.vlan {
                if !(1..=4094).contains(&v) {
                    return Err(self.err(format!("{f}.vlan"), format!("must be 1-4094, got {v}")));
                }
            }
            if let Some(et) = s.ether_type {
                if et < 0x0600 || [0x8100, 0x88a8, 0x9100].contains(&et) {
                    return Err(self.err(
                        format!("{f}.etherType"),
                        format!("must be an EtherType of at least 0x0600 that is not a VLAN tag (match tags with vlan), got {et:#06x}"),
                    ));
                }
                let ip = s.protocol.is_some() || !s.source.is_empty() || !s.destination.is_empty();
                if ip && et != 0x0800 && et != 0x86dd {
                    return Err(self.err(
                        format!("{f}.etherType"),
                        format!("{et:#06x} is not IP, but the rule matches IP fields (source, destination, protocol)"),
                    ));
                }
            }
            if let Some(m) = s.source_mac {
                self.unicast_mac(&format!("{f}.sourceMac"), m)?;
            }
        }
        Ok(())
    }

    fn network_service(&self, ns: &NetworkService) -> R {
        let s = &ns.spec;
        for (i, m) in s.matches.iter().enumerate() {
            let f = format!("spec.matches[{i}]");
            self.nsm_labels(&format!("{f}.sourceSelector"), &m.source_selector)?;
            for (j, r) in m.routes.iter().enumerate() {
                self.nsm_labels(
                    &format!("{f}.routes[{j}].destinationSelector"),
                    &r.destination_selector,
                )?;
            }
            if let Some(md) = &m.metadata {
                self.label_map(&format!("{f}.metadata.labels"), &md.labels)?;
            }
        }
        self.steering("spec.steering", &s.steering)?;
        self.payload(s.payload, s.exit.as_deref(), &s.steering)
    }

    fn network_service_endpoint(&self, e: &NetworkServiceEndpoint) -> R {
        let s = &e.spec;
        for (i, n) in s.network_service_names.iter().enumerate() {
            let f = format!("spec.networkServiceNames[{i}]");
            self.check(&f, names::dns1123_subdomain(n))?;
            if s.network_service_names[..i].contains(n) {
                return Err(self.err(f, format!("duplicate {n:?}")));
            }
        }
        for (svc, l) in &s.network_service_labels {
            let f = format!("spec.networkServiceLabels[{svc}]");
            if !s.network_service_names.contains(svc) {
                return Err(self.err(
                    f,
                    format!("labels for {svc:?}, which is not in networkServiceNames"),
                ));
            }
            self.label_map(&format!("{f}.labels"), &l.labels)?;
        }
        match (&s.interfaces, &s.function) {
            (Some(_), Some(_)) => {
                return Err(self.err(
                    "spec",
                    "either interfaces (an external function) or function (a built-in one), not both",
                ))
            }
            (None, None) => {
                return Err(self.err(
                    "spec",
                    "must say what the endpoint is: interfaces (an external function) or function (a built-in one)",
                ))
            }
            _ => {}
        }
        if let Some(x) = &s.interfaces {
            self.interface_name("spec.interfaces.ingress", &x.ingress)?;
            self.interface_name("spec.interfaces.egress", &x.egress)?;
            if x.ingress == x.egress {
                return Err(self.err(
                    "spec.interfaces.egress",
                    "must differ from ingress: the interface a packet comes back on tells which hop it is in",
                ));
            }
            if let Some(mac) = x.mac {
                self.unicast_mac("spec.interfaces.mac", mac)?;
            }
        }
        if let Some(f) = &s.function {
            self.builtin(f)?;
        }
        Ok(())
    }

    fn builtin(&self, f: &BuiltinFunction) -> R {
        let set = f.set();
        if set.len() != 1 {
            return Err(self.err(
                "spec.function",
                format!(
                    "must set exactly one of firewall, counter, loadBalancer, nat, police, mirror; got {}",
                    if set.is_empty() {
                        "none".to_string()
                    } else {
                        set.join(", ")
                    }
                ),
            ));
        }
        if let Some(fw) = &f.firewall {
            for (i, r) in fw.rules.iter().enumerate() {
                let p = format!("spec.function.firewall.rules[{i}]");
                self.nets(&format!("{p}.source"), &r.source)?;
                self.nets(&format!("{p}.destination"), &r.destination)?;
                if let Some(pr) = &r.protocol {
                    self.check(&format!("{p}.protocol"), chain_protocol(pr))?;
                }
                self.chain_ports(&format!("{p}.ports"), r.protocol.as_deref(), &r.ports)?;
            }
        }
        if let Some(lb) = &f.load_balancer {
            let p = "spec.function.loadBalancer";
            if let Some(pr) = &lb.protocol {
                self.check(&format!("{p}.protocol"), chain_protocol(pr))?;
            }
            if lb.port == Some(0) {
                return Err(self.err(format!("{p}.port"), "must be 1-65535"));
            }
            self.min_items(&format!("{p}.backends"), lb.backends.len(), 1)?;
            for (i, b) in lb.backends.iter().enumerate() {
                let bf = format!("{p}.backends[{i}]");
                if b.ip.is_ipv4() != lb.vip.is_ipv4() {
                    return Err(self.err(
                        format!("{bf}.ip"),
                        format!(
                            "must be of the vip's family ({}), got {}",
                            names::family(lb.vip),
                            b.ip
                        ),
                    ));
                }
                if b.port == Some(0) {
                    return Err(self.err(format!("{bf}.port"), "must be 1-65535"));
                }
                if b.port.is_some() && lb.port.is_none() {
                    return Err(self.err(
                        format!("{bf}.port"),
                        "a backend port needs the balancer's port",
                    ));
                }
                if lb.backends[..i]
                    .iter()
                    .any(|o| o.ip == b.ip && o.port == b.port)
                {
                    return Err(self.err(bf, format!("duplicate backend {}", b.ip)));
                }
            }
        }
        if let Some(n) = &f.nat {
            let p = "spec.function.nat";
            self.nets(&format!("{p}.inside"), std::slice::from_ref(&n.inside))?;
            self.nets(&format!("{p}.outside"), std::slice::from_ref(&n.outside))?;
            if n.inside.prefix_len() != n.outside.prefix_len()
                || n.inside.addr().is_ipv4() != n.outside.addr().is_ipv4()
            {
                return Err(self.err(
                    format!("{p}.outside"),
                    format!(
                        "must be of inside's family and length ({}), got {}",
                        n.inside, n.outside
                    ),
                ));
            }
        }
        if let Some(m) = &f.mirror {
            self.interface_name("spec.function.mirror.interface", &m.interface)?;
        }
        if let Some(pl) = &f.police {
            if pl.rate == 0 {
                return Err(self.err("spec.function.police.rate", "must be positive (bits/s)"));
            }
            if pl.burst == 0 || pl.burst > MAX_BURST_BITS {
                return Err(self.err(
                    "spec.function.police.burst",
                    format!("must be 1 to {MAX_BURST_BITS} bits"),
                ));
            }
        }
        Ok(())
    }

    fn chain(&self, c: &Chain) -> R {
        self.min_items("spec.endpoints", c.spec.endpoints.len(), 1)?;
        self.max_items("spec.endpoints", c.spec.endpoints.len(), 64)?;
        for (i, e) in c.spec.endpoints.iter().enumerate() {
            let f = format!("spec.endpoints[{i}]");
            self.check(&f, names::dns1123_subdomain(e))?;
            if c.spec.endpoints[..i].contains(e) {
                return Err(self.err(f, format!("endpoint {e:?} appears twice in the chain")));
            }
        }
        self.steering("spec.steering", &c.spec.steering)?;
        self.payload(c.spec.payload, c.spec.exit.as_deref(), &c.spec.steering)
    }

    fn network_attachment_definition(&self, nad: &NetworkAttachmentDefinition) -> R {
        super::multus::attachment_config(nad)
            .map(|_| ())
            .map_err(|(field, message)| self.err(field, message))
    }

    fn multicast_group(&self, g: &MulticastGroup) -> R {
        let s = &g.spec;
        self.network_name("spec.network", &s.network)?;
        if !s.group.is_multicast() {
            return Err(self.err(
                "spec.group",
                format!(
                    "must be a multicast address (224.0.0.0/4 or ff00::/8), got {}",
                    s.group
                ),
            ));
        }
        for (i, m) in s.members.iter().enumerate() {
            let f = format!("spec.members[{i}]");
            self.interface_name(&f, m)?;
            if s.members[..i].contains(m) {
                return Err(self.err(f, format!("duplicate member {m:?}")));
            }
        }
        Ok(())
    }
}

/// A domain name for a policy peer: labels of letters, digits, '-' and '_',
/// optionally `*.` in front and a trailing '.'.
fn domain_name(s: &str) -> Result<(), String> {
    let bad = || {
        format!("must be a domain name such as example.com or *.example.com (at least two labels, '*' only as a whole first label), got {s:?}")
    };
    let body = s.strip_prefix("*.").unwrap_or(s);
    let body = body.strip_suffix('.').unwrap_or(body);
    let labels: Vec<&str> = body.split('.').collect();
    if labels.len() < 2 || s.len() > 253 {
        return Err(bad());
    }
    for l in labels {
        let b = l.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}
