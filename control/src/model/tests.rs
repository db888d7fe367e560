//! Manifest-level tests: the network-policy-api conformance manifests and
//! data, realistic Kubernetes and Sluice manifests, one failing case per
//! validation rule (asserting the field path), and batches against a
//! desired state.

use super::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The folder holding `oracles/`: the project's `testdata/` (external
/// conformance data, kept with its upstream licence and attribution).
/// `SLUICE_SHARED_DIR` overrides.
fn shared_dir() -> PathBuf {
    if let Ok(d) = std::env::var("SLUICE_SHARED_DIR") {
        return PathBuf::from(d);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata");
    assert!(
        dir.join("oracles").is_dir(),
        "the oracle data was not found at {}",
        dir.display()
    );
    dir
}

fn oracle_dir() -> PathBuf {
    shared_dir().join("oracles/network-policy-api")
}

/// The conformance manifests are Go templates over the host-network ports;
/// render them as the suite does by default (port N = 34345 + N).
fn render_templates(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("closed template") + start;
        let expr = rest[start + 2..end].trim();
        let n: u32 = expr
            .strip_prefix("index .HostNetworkPorts ")
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected template {expr:?}"));
        out.push_str(&(34345 + n).to_string());
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

/// Parses one document and validates it, returning the first error.
fn check(yaml: &str) -> Result<Object, ModelError> {
    let mut objects = parse_manifests(yaml)?;
    assert_eq!(objects.len(), 1, "one object expected");
    let o = objects.remove(0);
    validate(&o)?;
    Ok(o)
}

fn refused(yaml: &str) -> ModelError {
    match check(yaml) {
        Ok(o) => panic!("accepted, expected a refusal:\n{}", o.to_yaml()),
        Err(e) => e,
    }
}

fn assert_field(yaml: &str, field: &str, message_part: &str) {
    let e = refused(yaml);
    assert_eq!(e.field, field, "wrong field in: {e}");
    assert!(
        e.message.contains(message_part),
        "message of {e:?} lacks {message_part:?}"
    );
}

#[test]
fn every_network_policy_api_manifest_parses() {
    let mut files = Vec::new();
    yaml_files(&oracle_dir().join("yaml"), &mut files);
    assert!(files.len() >= 40, "found only {} manifests", files.len());
    let mut kinds = std::collections::BTreeSet::new();
    let mut objects_seen = 0;
    for file in &files {
        let text = render_templates(&std::fs::read_to_string(file).unwrap());
        let docs = parse_documents(&text);
        assert!(!docs.is_empty(), "{}: no documents", file.display());
        for doc in docs {
            match doc {
                Ok(o) => {
                    validate(&o).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                    kinds.insert(o.kind());
                    objects_seen += 1;
                }
                // manifests.yaml runs its pods from StatefulSets, which Sluice
                // does not take: they must be refused by kind, by document.
                Err(e) => {
                    assert!(
                        file.ends_with("base/manifests.yaml"),
                        "{}: {e}",
                        file.display()
                    );
                    assert_eq!(e.field, "kind", "{e}");
                    assert!(e.message.contains("\"StatefulSet\""), "{e}");
                    assert!(e.object.starts_with("document "), "{e}");
                }
            }
        }
    }
    assert!(objects_seen >= 50, "{objects_seen}");
    for k in [
        Kind::Namespace,
        Kind::NetworkPolicy,
        Kind::AdminNetworkPolicy,
        Kind::BaselineAdminNetworkPolicy,
        Kind::ClusterNetworkPolicy,
    ] {
        assert!(kinds.contains(&k), "no {k} among the manifests");
    }
}

#[test]
fn network_policy_api_manifests_apply_per_file() {
    let root = oracle_dir().join("yaml");
    for version in ["v0.1.8", "head-0eec1b0"] {
        let base = root.join(version).join("base");
        let namespaces: Vec<Change> =
            parse_documents(&std::fs::read_to_string(base.join("manifests.yaml")).unwrap())
                .into_iter()
                .filter_map(Result::ok)
                .map(Change::Apply)
                .collect();
        assert_eq!(namespaces.len(), 5);
        let mut files = Vec::new();
        yaml_files(&base, &mut files);
        for file in files.iter().filter(|f| !f.ends_with("manifests.yaml")) {
            let text = render_templates(&std::fs::read_to_string(file).unwrap());
            let mut batch = namespaces.clone();
            batch.extend(
                parse_manifests(&text)
                    .unwrap()
                    .into_iter()
                    .map(Change::Apply),
            );
            let mut state = DesiredState::new();
            state
                .apply(&batch)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert_eq!(state.len(), batch.len());
        }
    }
}

/// Replaces the data's run-time pod-IP CIDRs (`{"podCIDR": ..., "prefix":
/// 32}`) with a literal CIDR, as the conformance run would.
fn render_pod_cidrs(v: &mut Value) {
    match v {
        Value::Object(m) if m.contains_key("podCIDR") => {
            *v = Value::String("10.244.1.7/32".into());
        }
        Value::Object(m) => m.values_mut().for_each(render_pod_cidrs),
        Value::Array(a) => a.iter_mut().for_each(render_pod_cidrs),
        _ => {}
    }
}

#[test]
fn network_policy_api_cases_replay_through_the_state() {
    for file in [
        "clusternetworkpolicy-v1alpha2.json",
        "adminnetworkpolicy-v1alpha1-v0.1.8.json",
    ] {
        let data: Value =
            serde_json::from_str(&std::fs::read_to_string(oracle_dir().join(file)).unwrap())
                .unwrap();
        let mut base = Vec::new();
        for ns in data["base"]["namespaces"].as_array().unwrap() {
            base.push(Change::Apply(
                Object::from_value(json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": ns["name"], "labels": ns["labels"]},
                }))
                .unwrap(),
            ));
        }
        for pod in data["base"]["pods"].as_array().unwrap() {
            let containers: Vec<Value> = pod["containers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    json!({
                        "name": c["name"],
                        "image": "registry.k8s.io/e2e-test-images/agnhost:2.45",
                        "ports": c["declaredPorts"],
                    })
                })
                .collect();
            let o = Object::from_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod["name"], "namespace": pod["namespace"], "labels": pod["labels"]},
                "spec": {"hostNetwork": pod["hostNetwork"], "containers": containers},
            }))
            .unwrap();
            base.push(Change::Apply(o));
        }
        for case in data["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let mut state = DesiredState::new();
            state.apply(&base).unwrap();
            for step in case["steps"].as_array().unwrap() {
                let mut batch = Vec::new();
                for key in ["apply", "mutate"] {
                    for o in step
                        .get(key)
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let mut o = o.clone();
                        render_pod_cidrs(&mut o);
                        let o = Object::from_value(o).unwrap_or_else(|e| panic!("{name}: {e}"));
                        batch.push(Change::Apply(o));
                    }
                }
                for d in step
                    .get("delete")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let kind: Kind = d["kind"].as_str().unwrap().parse().unwrap();
                    let md = &d["metadata"];
                    batch.push(Change::Delete(ObjectKey {
                        kind,
                        namespace: md["namespace"].as_str().map(String::from),
                        name: md["name"].as_str().unwrap().to_string(),
                    }));
                }
                if !batch.is_empty() {
                    state
                        .apply(&batch)
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                }
            }
        }
    }
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
"#;

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  labels:
    app.kubernetes.io/name: web
spec:
  type: LoadBalancer
  selector:
    app: web
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, "fd00:10:96::a"]
  externalIPs: [192.0.2.10]
  externalTrafficPolicy: Local
  internalTrafficPolicy: Cluster
  sessionAffinity: ClientIP
  sessionAffinityConfig:
    clientIP:
      timeoutSeconds: 600
  trafficDistribution: PreferClose
  ports:
  - name: http
    protocol: TCP
    port: 80
    targetPort: web
    nodePort: 30080
  - name: https
    protocol: TCP
    port: 443
    targetPort: 8443
    nodePort: 30443
  - name: quic
    protocol: UDP
    port: 443
    targetPort: 8443
status:
  loadBalancer:
    ingress:
    - ip: 198.51.100.7
"#;

const ENDPOINT_SLICE: &str = r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc12
  namespace: shop
  labels:
    kubernetes.io/service-name: web
    endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
addressType: IPv4
ports:
- name: http
  protocol: TCP
  port: 8080
- name: https
  protocol: TCP
  port: 8443
endpoints:
- addresses: [10.244.1.5]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: node-a
  zone: us-east-1a
  hints:
    forZones: [{name: us-east-1a}]
  targetRef: {kind: Pod, namespace: shop, name: web-7d4b9-x2x1z}
- addresses: [10.244.2.9]
  conditions: {ready: false, serving: true, terminating: true}
  nodeName: node-b
  zone: us-east-1b
"#;

/// The example from the Kubernetes documentation's NetworkPolicy page.
const NETWORK_POLICY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
  - Ingress
  - Egress
  ingress:
  - from:
    - ipBlock:
        cidr: 172.17.0.0/16
        except:
        - 172.17.1.0/24
    - namespaceSelector:
        matchLabels:
          project: myproject
    - podSelector:
        matchLabels:
          role: frontend
    ports:
    - protocol: TCP
      port: 6379
  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/24
    ports:
    - protocol: TCP
      port: 32000
      endPort: 32768
"#;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web-7d4b9-x2x1z
  namespace: shop
  labels: {app: web}
spec:
  nodeName: node-a
  containers:
  - name: web
    image: nginx:1.27
    ports:
    - name: web
      containerPort: 8080
    - name: web-tls
      containerPort: 8443
      protocol: TCP
    resources:
      limits: {cpu: 500m, memory: 128Mi}
status:
  phase: Running
  podIP: 10.244.1.5
  podIPs:
  - ip: 10.244.1.5
  - ip: fd00:10:244:1::5
  hostIP: 192.168.1.10
"#;

const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: node-a
  labels:
    topology.kubernetes.io/zone: us-east-1a
    kubernetes.io/os: linux
spec:
  podCIDR: 10.244.1.0/24
  podCIDRs: [10.244.1.0/24, "fd00:10:244:1::/64"]
status:
  addresses:
  - type: InternalIP
    address: 192.168.1.10
  - type: InternalIP
    address: "fd00::10"
  - type: Hostname
    address: node-a
"#;

const SLUICE: &str = r#"
apiVersion: sluice.dev/v1
kind: Network
metadata: {name: blue}
spec:
  description: tenant blue
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: port0}
spec:
  backend: mem:a
  mac: 02:00:00:00:00:01
  mtu: 9000
  network: blue
  addresses: [10.0.0.1/24, "fd00::1/64"]
---
apiVersion: sluice.dev/v1
kind: Interface
metadata: {name: port1}
spec:
  backend: af_xdp:eth1
  mac: 02:00:00:00:00:02
  network: blue
  addresses: [10.0.1.1/24]
---
apiVersion: sluice.dev/v1
kind: Route
metadata: {name: blue-default}
spec:
  network: blue
  destination: 0.0.0.0/0
  nextHops:
  - {gateway: 10.0.0.254}
  - {gateway: 10.0.1.254, interface: port1}
---
apiVersion: sluice.dev/v1
kind: Route
metadata: {name: blue-sink}
spec:
  network: blue
  destination: 192.0.2.0/24
  type: Blackhole
---
apiVersion: sluice.dev/v1
kind: Neighbour
metadata: {name: blue-gw}
spec:
  network: blue
  ip: 10.0.0.254
  mac: 02:00:00:00:00:fe
---
apiVersion: sluice.dev/v1
kind: Bandwidth
metadata: {name: web-limit, namespace: shop}
spec:
  podSelector:
    matchLabels: {app: web}
  ingressRate: 100000000
  ingressBurst: 8000000
  egressRate: 50000000
  egressBurst: 4000000
---
apiVersion: sluice.dev/v1
kind: NetworkServiceEndpoint
metadata: {name: firewall-1, labels: {nf: firewall}}
spec:
  networkServiceNames: [secure-web]
  networkServiceLabels: {secure-web: {labels: {app: firewall}}}
  interfaces: {ingress: port0, egress: port1}
---
apiVersion: sluice.dev/v1
kind: Chain
metadata: {name: secure-web-chain}
spec:
  endpoints: [firewall-1]
  failureMode: Skip
  steering:
  - {interface: port0, destination: [10.96.0.0/16], protocol: TCP, ports: [{port: 80}]}
---
apiVersion: sluice.dev/v1
kind: NetworkService
metadata: {name: secure-web}
spec:
  payload: IP
  matches:
  - sourceSelector: {app: web}
    routes:
    - destinationSelector: {app: firewall}
    fallthrough: true
  steering:
  - podSelector:
      matchLabels: {app: web}
---
apiVersion: sluice.dev/v1
kind: MulticastGroup
metadata: {name: blue-mdns}
spec:
  network: blue
  group: 224.0.0.251
  members: [port0, port1]
"#;

#[test]
fn a_deployment_is_refused_by_kind() {
    let e = parse_manifests(DEPLOYMENT).unwrap_err();
    assert_eq!(e.object, "document 1");
    assert_eq!(e.field, "kind");
    assert!(
        e.message
            .contains("unsupported kind \"Deployment\" (apiVersion apps/v1)"),
        "{e}"
    );
    assert!(e.message.contains("v1/Service"), "{e}");
    // In a stream, the document index points at it.
    let text = format!("{NETWORK_POLICY}---\n{DEPLOYMENT}");
    let e = parse_manifests(&text).unwrap_err();
    assert_eq!(e.object, "document 2");
    let docs = parse_documents(&text);
    assert!(docs[0].is_ok() && docs[1].is_err());
}

#[test]
fn wrong_api_version_for_a_kind() {
    let e = parse_manifests("apiVersion: v2\nkind: Service\nmetadata: {name: a}\n").unwrap_err();
    assert_eq!(
        (e.object.as_str(), e.field.as_str()),
        ("document 1", "apiVersion")
    );
    assert!(e.message.contains("served as apiVersion v1"), "{e}");
    let e = parse_manifests("kind: Service\nmetadata: {name: a}\n").unwrap_err();
    assert_eq!(e.field, "apiVersion");
    let e = parse_manifests("- 1\n- 2\n").unwrap_err();
    assert_eq!(e.object, "document 1 item 1");
}

fn round_trips(o: &Object) {
    let again = parse_manifests(&o.to_yaml()).unwrap();
    assert_eq!(again, vec![o.clone()], "YAML round trip of {}", o.key());
    let again = parse_manifests(&o.to_json()).unwrap();
    assert_eq!(again, vec![o.clone()], "JSON round trip of {}", o.key());
    assert_eq!(Object::from_value(o.to_value()).unwrap(), *o);
}

#[test]
fn real_kubernetes_manifests_parse_validate_and_round_trip() {
    let text = [SERVICE, ENDPOINT_SLICE, NETWORK_POLICY, POD, NODE].join("---\n");
    let objects = parse_manifests(&text).unwrap();
    let keys: Vec<String> = objects.iter().map(|o| o.key().to_string()).collect();
    assert_eq!(
        keys,
        [
            "Service shop/web",
            "EndpointSlice shop/web-abc12",
            "NetworkPolicy default/test-network-policy",
            "Pod shop/web-7d4b9-x2x1z",
            "Node node-a",
        ]
    );
    for o in &objects {
        validate(o).unwrap_or_else(|e| panic!("{e}"));
        round_trips(o);
    }
    let Object::Service(svc) = &objects[0] else {
        panic!()
    };
    let spec = svc.spec.as_ref().unwrap();
    assert_eq!(spec.ports.as_ref().unwrap().len(), 3);
    assert_eq!(spec.cluster_ips.as_ref().unwrap()[1], "fd00:10:96::a");
    assert_eq!(objects[0].labels()["app.kubernetes.io/name"], "web");
    assert!(objects[4]
        .labels()
        .contains_key("topology.kubernetes.io/zone"));
    // The whole set is one acceptable batch.
    let mut state = DesiredState::new();
    let batch: Vec<Change> = objects.into_iter().map(Change::Apply).collect();
    assert_eq!(state.apply(&batch).unwrap(), 1);
}

#[test]
fn json_and_lists_are_manifests_too() {
    let json = r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}"#;
    let o = parse_manifests(json).unwrap();
    assert_eq!(o[0].key(), ObjectKey::cluster(Kind::Namespace, "shop"));
    // The API server's label is filled in.
    assert_eq!(o[0].labels()[NAMESPACE_NAME_LABEL], "shop");
    let list = r#"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: a}}
- {apiVersion: v1, kind: Namespace, metadata: {name: b}}
"#;
    assert_eq!(parse_manifests(list).unwrap().len(), 2);
    let array = format!("[{json}, {json}]");
    assert_eq!(parse_manifests(&array).unwrap().len(), 2);
    // Empty documents and comments are skipped.
    assert_eq!(parse_manifests("---\n# nothing\n---\n").unwrap().len(), 0);
    let e = parse_manifests("a: [\n").unwrap_err();
    assert!(e.message.contains("not valid YAML"), "{e}");
}

#[test]
fn namespaced_objects_default_to_the_default_namespace() {
    let o = check(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n",
    )
    .unwrap();
    assert_eq!(o.namespace(), Some("default"));
    assert_eq!(o.key().to_string(), "Service default/web");
}

#[test]
fn sluice_manifests_parse_validate_round_trip_and_apply() {
    let objects = parse_manifests(SLUICE).unwrap();
    assert_eq!(objects.len(), 11);
    for o in &objects {
        validate(o).unwrap_or_else(|e| panic!("{e}"));
        round_trips(o);
    }
    let Object::Interface(port0) = &objects[1] else {
        panic!()
    };
    assert_eq!(port0.spec.mac, MacAddr([2, 0, 0, 0, 0, 1]));
    assert_eq!(port0.spec.addresses[1].to_string(), "fd00::1/64");
    assert_eq!(port0.spec.backend_parts(), Some(("mem", "a")));
    let Object::Bandwidth(bw) = &objects[6] else {
        panic!()
    };
    assert_eq!(objects[6].key().to_string(), "Bandwidth shop/web-limit");
    assert_eq!(bw.spec.ingress_rate, Some(100_000_000));
    let mut state = DesiredState::new();
    let batch: Vec<Change> = objects.into_iter().map(Change::Apply).collect();
    state.apply(&batch).unwrap();
    assert_eq!(state.len(), 11);
}

// ---- unknown fields ----

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let svc = SERVICE.replace(
        "    protocol: TCP\n    port: 80\n",
        "    prot: TCP\n    port: 80\n",
    );
    let e = parse_manifests(&svc).unwrap_err();
    assert_eq!(e.object, "Service shop/web (document 1)");
    assert_eq!(e.field, "spec.ports[0].prot");

    let e = parse_manifests(&NETWORK_POLICY.replace(
        "  podSelector:\n    matchLabels:\n      role: db",
        "  podSelector:\n    matchLabel:\n      role: db",
    ))
    .unwrap_err();
    assert_eq!(e.field, "spec.podSelector.matchLabel");

    let e =
        parse_manifests("apiVersion: v1\nkind: Namespace\nmetadata: {name: a, lables: {x: y}}\n")
            .unwrap_err();
    assert_eq!(e.field, "metadata.lables");

    let e = parse_manifests("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\nsepc: {}\n")
        .unwrap_err();
    assert_eq!(e.field, "sepc");

    // Sluice's own kinds: serde's deny_unknown_fields, at any depth.
    let e = parse_manifests(&SLUICE.replace("  mtu: 9000", "  mtuu: 9000")).unwrap_err();
    assert_eq!(e.object, "Interface port0 (document 2)");
    assert_eq!(e.field, "spec.mtuu");
    assert!(e.message.starts_with("unknown field"), "{e}");
    let e = parse_manifests(&SLUICE.replace(
        "- {gateway: 10.0.0.254}",
        "- {gateway: 10.0.0.254, weight: 2}",
    ))
    .unwrap_err();
    assert_eq!(e.field, "spec.nextHops[0].weight");
    let e =
        parse_manifests("apiVersion: sluice.dev/v1\nkind: Network\nmetadata: {name: a, uid2: x}\n")
            .unwrap_err();
    assert_eq!(e.field, "metadata.uid2");

    // The network-policy-api kinds: v1alpha1 once spelled the subject
    // `namespaceSelector`; that field is gone.
    let anp = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: a}
spec:
  priority: 1
  subject:
    namespaceSelector: {}
"#;
    let e = parse_manifests(anp).unwrap_err();
    assert_eq!(e.field, "spec.subject.namespaceSelector");
    let cnp = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: a}
spec:
  tier: Admin
  priority: 1
  subject: {namespaces: {matchLabels: {a: b}, matchLabelz: {}}}
"#;
    let e = parse_manifests(cnp).unwrap_err();
    assert_eq!(e.field, "spec.subject.namespaces.matchLabelz");

    // Keys whose value is null are ignored, as the API server ignores them.
    let ok = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, creationTimestamp: null, bogus: null}\n";
    assert!(parse_manifests(ok).is_ok());
}

#[test]
fn type_errors_name_the_field() {
    let e = parse_manifests(&SERVICE.replace("port: 80", "port: eighty")).unwrap_err();
    assert_eq!(e.field, "spec.ports[0].port");
    let e = parse_manifests(&SLUICE.replace("mac: 02:00:00:00:00:01", "mac: 02:00:00:00:01"))
        .unwrap_err();
    assert_eq!(e.field, "spec.mac");
    assert!(e.message.contains("expected a MAC address"), "{e}");
    let e = parse_manifests(&SLUICE.replace(
        "[10.0.0.1/24, \"fd00::1/64\"]",
        "[10.0.0.1/24, 10.0.0.300/24]",
    ))
    .unwrap_err();
    assert_eq!(e.field, "spec.addresses[1]");
    assert!(e.message.contains("expected a CIDR"), "{e}");
    let e = parse_manifests(&SLUICE.replace("{gateway: 10.0.0.254}", "{gateway: gw}")).unwrap_err();
    assert_eq!(e.field, "spec.nextHops[0].gateway");
    let anp = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: a}
spec:
  priority: 1
  subject: {namespaces: {}}
  egress:
  - action: Accept
    to: [{namespaces: {}}]
"#;
    let e = parse_manifests(anp).unwrap_err();
    assert_eq!(e.field, "spec.egress[0].action");
    assert!(e.message.contains("Allow"), "{e}");
    let cnp = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: a}
spec:
  tier: Middle
  priority: 1
  subject: {namespaces: {}}
"#;
    assert_eq!(parse_manifests(cnp).unwrap_err().field, "spec.tier");
}

#[test]
fn error_display() {
    let e = refused(&SERVICE.replace("port: 80", "port: 70000"));
    assert_eq!(
        e.to_string(),
        "Service shop/web: spec.ports[0].port: must be 1-65535, got 70000"
    );
    let e = ModelError::new("Network blue", "", "cannot be deleted");
    assert_eq!(e.to_string(), "Network blue: cannot be deleted");
}

#[test]
fn kinds() {
    assert_eq!(Kind::Service.as_str(), "Service");
    assert_eq!(Kind::EndpointSlice.api_version(), "discovery.k8s.io/v1");
    assert_eq!(
        Kind::ClusterNetworkPolicy.api_version(),
        "policy.networking.k8s.io/v1alpha2"
    );
    assert_eq!(Kind::Interface.api_version(), "sluice.dev/v1");
    assert!(Kind::Bandwidth.namespaced());
    assert!(!Kind::Route.namespaced());
    assert!(!Kind::AdminNetworkPolicy.namespaced());
    assert!(Kind::Pod.namespaced());
    for k in Kind::ALL {
        assert_eq!(k.as_str().parse::<Kind>().unwrap(), *k);
        assert_eq!(Kind::from_api(k.api_version(), k.as_str()), Some(*k));
    }
    assert!("service".parse::<Kind>().is_err());
    assert_eq!(Kind::from_api("v1", "NetworkPolicy"), None);
}

// ---- one failing case per validation rule ----

fn svc(spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\nspec:\n{spec}"
    )
}

#[test]
fn names_follow_each_kinds_rule() {
    assert_field(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a.b}\n",
        "metadata.name",
        "DNS-1123 label",
    );
    assert_field(
        "apiVersion: v1\nkind: Service\nmetadata: {name: 1web}\nspec: {ports: [{port: 80}]}\n",
        "metadata.name",
        "DNS-1035",
    );
    assert_field(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: Bad_Name}\nspec: {}\n",
        "metadata.name",
        "DNS-1123 subdomain",
    );
    // Dots are fine in a subdomain name.
    assert!(check(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a.b}\nspec: {}\n"
    )
    .is_ok());
    assert_field(
        "apiVersion: v1\nkind: Namespace\nmetadata: {}\n",
        "metadata.name",
        "required",
    );
    assert_field(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, namespace: b}\n",
        "metadata.namespace",
        "cluster-scoped",
    );
    assert_field(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {\"bad key\": x}}\n",
        "metadata.labels[bad key]",
        "qualified name",
    );
    assert_field(
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: a, labels: {{k: {}}}}}\n",
            "v".repeat(64)
        ),
        "metadata.labels[k]",
        "63",
    );
    assert_field(
        "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata: {name: mine}\nspec: {subject: {namespaces: {}}}\n",
        "metadata.name",
        "\"default\"",
    );
    assert_field(
        "apiVersion: sluice.dev/v1\nkind: Interface\nmetadata: {name: port.0}\nspec: {backend: \"mem:a\", mac: \"02:00:00:00:00:01\"}\n",
        "metadata.name",
        "DNS-1123 label",
    );
}

#[test]
fn service_ports() {
    assert_field(
        &svc("  ports: [{port: 70000}]\n"),
        "spec.ports[0].port",
        "1-65535, got 70000",
    );
    assert_field(
        &svc("  ports: [{port: 0}]\n"),
        "spec.ports[0].port",
        "1-65535",
    );
    assert_field(
        &svc("  ports: [{port: 80, protocol: ICMP}]\n"),
        "spec.ports[0].protocol",
        "TCP, UDP, SCTP",
    );
    assert_field(
        &svc("  ports: [{port: 80, protocol: tcp}]\n"),
        "spec.ports[0].protocol",
        "TCP, UDP, SCTP",
    );
    assert_field(
        &svc("  ports: [{port: 80, targetPort: 0}]\n"),
        "spec.ports[0].targetPort",
        "1-65535",
    );
    assert_field(
        &svc("  ports: [{port: 80, targetPort: web--port}]\n"),
        "spec.ports[0].targetPort",
        "IANA_SVC_NAME",
    );
    assert_field(
        &svc("  ports: [{port: 80, targetPort: \"8080\"}]\n"),
        "spec.ports[0].targetPort",
        "without quotes",
    );
    assert_field(
        &svc("  ports: [{name: a, port: 80}, {port: 81}]\n"),
        "spec.ports[1].name",
        "required when a Service has more than one port",
    );
    assert_field(
        &svc("  ports: [{name: a, port: 80}, {name: a, port: 81}]\n"),
        "spec.ports[1].name",
        "duplicate port name",
    );
    assert_field(
        &svc("  ports: [{name: a, port: 80}, {name: b, port: 80}]\n"),
        "spec.ports[1].port",
        "duplicate port 80/TCP",
    );
    // The same port number over two protocols is fine.
    assert!(check(&svc(
        "  ports: [{name: a, port: 53, protocol: UDP}, {name: b, port: 53}]\n"
    ))
    .is_ok());
    assert_field(
        &svc("  type: ClusterIP\n"),
        "spec.ports",
        "at least one port",
    );
    assert_field(
        &svc("  type: NodePort\n  ports: [{port: 80, nodePort: 8080}]\n"),
        "spec.ports[0].nodePort",
        "30000-32767, got 8080",
    );
    assert_field(
        &svc("  ports: [{port: 80, nodePort: 30080}]\n"),
        "spec.ports[0].nodePort",
        "NodePort or LoadBalancer",
    );
    assert_field(
        &svc("  type: Foo\n  ports: [{port: 80}]\n"),
        "spec.type",
        "ClusterIP, NodePort",
    );
    assert!(check(&svc(
        "  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n"
    ))
    .is_ok());
}

#[test]
fn service_addresses_and_families() {
    assert_field(
        &svc("  clusterIP: 10.96.0.300\n  ports: [{port: 80}]\n"),
        "spec.clusterIP",
        "IPv4 or IPv6 address",
    );
    assert!(
        check(&svc("  clusterIP: None\n")).is_ok(),
        "headless needs no ports"
    );
    assert_field(
        &svc("  ipFamilies: [IPv6]\n  clusterIPs: [10.96.0.1]\n  ports: [{port: 80}]\n"),
        "spec.clusterIPs[0]",
        "IPv6 address to match spec.ipFamilies[0]",
    );
    assert_field(
        &svc("  ipFamilies: [IPv4, IPv6]\n  clusterIPs: [10.96.0.1, 10.96.0.2]\n  ports: [{port: 80}]\n"),
        "spec.clusterIPs[1]",
        "IPv6 address",
    );
    assert_field(
        &svc("  clusterIPs: [10.96.0.1, 10.96.0.2]\n  ports: [{port: 80}]\n"),
        "spec.clusterIPs[1]",
        "one address of each family",
    );
    assert_field(
        &svc("  ipFamilies: [IPv6]\n  clusterIP: 10.96.0.1\n  ports: [{port: 80}]\n"),
        "spec.clusterIP",
        "IPv6 address to match spec.ipFamilies[0]",
    );
    assert_field(
        &svc("  clusterIP: 10.96.0.1\n  clusterIPs: [10.96.0.2]\n  ports: [{port: 80}]\n"),
        "spec.clusterIPs[0]",
        "must equal spec.clusterIP",
    );
    assert_field(
        &svc("  ipFamilies: [IPv4, IPv4]\n  ports: [{port: 80}]\n"),
        "spec.ipFamilies[1]",
        "duplicate",
    );
    assert_field(
        &svc("  ipFamilies: [IPv5]\n  ports: [{port: 80}]\n"),
        "spec.ipFamilies[0]",
        "IPv4, IPv6",
    );
    assert_field(
        &svc("  ipFamilyPolicy: SingleStack\n  ipFamilies: [IPv4, IPv6]\n  ports: [{port: 80}]\n"),
        "spec.ipFamilies",
        "SingleStack",
    );
    assert_field(
        &svc("  externalIPs: [1.2.3]\n  ports: [{port: 80}]\n"),
        "spec.externalIPs[0]",
        "address",
    );
    assert_field(
        &svc(
            "  type: LoadBalancer\n  loadBalancerSourceRanges: [10.0.0.0]\n  ports: [{port: 80}]\n",
        ),
        "spec.loadBalancerSourceRanges[0]",
        "CIDR",
    );
    assert_field(
        &svc("  sessionAffinity: Sticky\n  ports: [{port: 80}]\n"),
        "spec.sessionAffinity",
        "None, ClientIP",
    );
    assert_field(
        &svc("  externalTrafficPolicy: Local\n  ports: [{port: 80}]\n"),
        "spec.externalTrafficPolicy",
        "NodePort or LoadBalancer",
    );
    assert_field(
        &svc("  selector: {app: \"a b\"}\n  ports: [{port: 80}]\n"),
        "spec.selector[app]",
        "letters, digits",
    );
    assert_field(
        &svc("  type: ExternalName\n"),
        "spec.externalName",
        "required",
    );
}

#[test]
fn endpoint_slices() {
    let es = |body: &str| {
        format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, namespace: shop}}\n{body}")
    };
    assert_field(
        &es("addressType: IPv5\nendpoints: []\n"),
        "addressType",
        "IPv4, IPv6, FQDN",
    );
    assert_field(
        &es("addressType: IPv4\nendpoints: [{addresses: [\"fd00::1\"]}]\n"),
        "endpoints[0].addresses[0]",
        "IPv4 address to match addressType",
    );
    assert_field(
        &es(
            "addressType: IPv6\nendpoints: [{addresses: [\"fd00::1\"]}, {addresses: [10.0.0.1]}]\n",
        ),
        "endpoints[1].addresses[0]",
        "IPv6 address",
    );
    assert_field(
        &es("addressType: IPv4\nendpoints: [{addresses: []}]\n"),
        "endpoints[0].addresses",
        "at least 1",
    );
    assert_field(
        &es("addressType: IPv4\nendpoints: []\nports: [{port: 65536}]\n"),
        "ports[0].port",
        "1-65535",
    );
    assert_field(
        &es("addressType: IPv4\nendpoints: []\nports: [{port: 80, protocol: HTTP}]\n"),
        "ports[0].protocol",
        "TCP, UDP, SCTP",
    );
    assert_field(
        &es(
            "addressType: IPv4\nendpoints: []\nports: [{name: a, port: 80}, {name: a, port: 81}]\n",
        ),
        "ports[1].name",
        "duplicate",
    );
    assert!(check(&es(
        "addressType: FQDN\nendpoints: [{addresses: [db.example.com]}]\n"
    ))
    .is_ok());
}

fn np(spec: &str) -> String {
    format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n{spec}")
}

#[test]
fn network_policies() {
    assert_field(
        &np("  ingress: [{ports: [{port: 80, endPort: 79}]}]\n"),
        "spec.ingress[0].ports[0].endPort",
        "greater than or equal to port (80), got 79",
    );
    assert_field(
        &np("  ingress: [{ports: [{endPort: 90}]}]\n"),
        "spec.ingress[0].ports[0].endPort",
        "without port",
    );
    assert_field(
        &np("  egress: [{ports: [{port: http, endPort: 90}]}]\n"),
        "spec.egress[0].ports[0].endPort",
        "named port",
    );
    assert_field(
        &np("  ingress: [{ports: [{port: 80, endPort: 70000}]}]\n"),
        "spec.ingress[0].ports[0].endPort",
        "1-65535",
    );
    assert_field(
        &np("  ingress: [{ports: [{port: 0}]}]\n"),
        "spec.ingress[0].ports[0].port",
        "1-65535",
    );
    assert_field(
        &np("  ingress: [{ports: [{port: 80, protocol: ICMP}]}]\n"),
        "spec.ingress[0].ports[0].protocol",
        "TCP, UDP, SCTP",
    );
    assert_field(
        &np("  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]\n"),
        "spec.ingress[0].from[0].ipBlock.cidr",
        "CIDR",
    );
    assert_field(
        &np("  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}]}]\n"),
        "spec.egress[0].to[0].ipBlock.except[0]",
        "strict subset",
    );
    assert_field(
        &np("  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/16]}}]}]\n"),
        "spec.egress[0].to[0].ipBlock.except[0]",
        "strict subset",
    );
    assert_field(
        &np("  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [\"fd00::/64\"]}}]}]\n"),
        "spec.egress[0].to[0].ipBlock.except[0]",
        "strict subset",
    );
    assert_field(
        &np("  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16}, podSelector: {}}]}]\n"),
        "spec.egress[0].to[0]",
        "may not be combined",
    );
    assert_field(
        &np("  policyTypes: [Ingress, Both]\n"),
        "spec.policyTypes[1]",
        "Ingress, Egress",
    );
    assert_field(
        &np("  policyTypes: [Egress, Egress]\n"),
        "spec.policyTypes[1]",
        "duplicate",
    );
    assert_field(
        &np("  podSelector: {matchExpressions: [{key: tier, operator: In}]}\n"),
        "spec.podSelector.matchExpressions[0].values",
        "non-empty",
    );
    assert_field(
        &np("  podSelector: {matchExpressions: [{key: tier, operator: Exists, values: [a]}]}\n"),
        "spec.podSelector.matchExpressions[0].values",
        "must be empty",
    );
    assert_field(
        &np("  podSelector: {matchExpressions: [{key: tier, operator: Equals, values: [a]}]}\n"),
        "spec.podSelector.matchExpressions[0].operator",
        "In, NotIn, Exists, DoesNotExist",
    );
    assert_field(
        &np("  ingress: [{from: [{namespaceSelector: {matchLabels: {\"example.com/\": x}}}]}]\n"),
        "spec.ingress[0].from[0].namespaceSelector.matchLabels[example.com/]",
        "qualified name",
    );
    assert_field(
        &np(&format!(
            "  podSelector: {{matchLabels: {{app: {}}}}}\n",
            "a".repeat(64)
        )),
        "spec.podSelector.matchLabels[app]",
        "63",
    );
}

fn anp(spec: &str) -> String {
    format!("apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {{name: a}}\nspec:\n{spec}")
}

fn cnp(spec: &str) -> String {
    format!("apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: a}}\nspec:\n  tier: Admin\n{spec}")
}

#[test]
fn admin_network_policies() {
    assert_field(
        &anp("  priority: 1001\n  subject: {namespaces: {}}\n"),
        "spec.priority",
        "0-1000, got 1001",
    );
    assert_field(
        &anp("  priority: -1\n  subject: {namespaces: {}}\n"),
        "spec.priority",
        "0-1000",
    );
    assert_field(
        &anp("  priority: 1\n  subject: {}\n"),
        "spec.subject",
        "exactly one of namespaces, pods",
    );
    assert_field(
        &anp(
            "  priority: 1\n  subject: {namespaces: {}}\n  ingress: [{action: Allow, from: []}]\n",
        ),
        "spec.ingress[0].from",
        "at least 1",
    );
    assert_field(
        &anp("  priority: 1\n  subject: {namespaces: {}}\n  egress: [{action: Deny, to: [{namespaces: {}, nodes: {}}]}]\n"),
        "spec.egress[0].to[0]",
        "exactly one",
    );
    assert_field(
        &anp("  priority: 1\n  subject: {namespaces: {}}\n  egress: [{action: Deny, to: [{networks: [10.0.0.0/40]}]}]\n"),
        "spec.egress[0].to[0].networks[0]",
        "CIDR",
    );
    assert_field(
        &anp("  priority: 1\n  subject: {namespaces: {}}\n  egress: [{action: Deny, to: [{domainNames: [example.com]}]}]\n"),
        "spec.egress[0].to[0].domainNames",
        "only supported in Allow",
    );
    assert_field(
        &anp("  priority: 1\n  subject: {namespaces: {}}\n  egress: [{action: Allow, to: [{domainNames: [\"ex*.com\"]}]}]\n"),
        "spec.egress[0].to[0].domainNames[0]",
        "domain name",
    );
    assert_field(
        &anp("  priority: 1\n  subject: {namespaces: {}}\n  ingress: [{action: Allow, from: [{namespaces: {}}], ports: [{portNumber: {protocol: TCP, port: 0}}]}]\n"),
        "spec.ingress[0].ports[0].portNumber.port",
        "1-65535",
    );
    assert_field(
        &anp("  priority: 1\n  subject: {namespaces: {}}\n  ingress: [{action: Allow, from: [{namespaces: {}}], ports: [{portNumber: {protocol: GRE, port: 1}}]}]\n"),
        "spec.ingress[0].ports[0].portNumber.protocol",
        "TCP, UDP, SCTP",
    );
    assert_field(
        &anp("  priority: 1\n  subject: {namespaces: {}}\n  ingress: [{action: Allow, from: [{namespaces: {}}], ports: [{portRange: {start: 90, end: 80}}]}]\n"),
        "spec.ingress[0].ports[0].portRange.end",
        "greater than start",
    );
    assert_field(
        &anp("  priority: 1\n  subject: {namespaces: {}}\n  ingress: [{action: Allow, from: [{namespaces: {}}], ports: [{namedPort: web, portNumber: {protocol: TCP, port: 80}}]}]\n"),
        "spec.ingress[0].ports[0]",
        "exactly one of portNumber, namedPort, portRange",
    );
    assert_field(
        &anp("  priority: 1\n  subject: {namespaces: {}}\n  egress: [{action: Allow, to: [{networks: [10.0.0.0/8]}], ports: [{namedPort: web}]}]\n"),
        "spec.egress[0].to[0]",
        "named ports",
    );
    assert_field(
        &anp("  priority: 1\n  subject: {pods: {namespaceSelector: {}, podSelector: {matchExpressions: [{key: a, operator: NotIn}]}}}\n"),
        "spec.subject.pods.podSelector.matchExpressions[0].values",
        "non-empty",
    );
    assert_field(
        &anp(&format!("  priority: 1\n  subject: {{namespaces: {{}}}}\n  ingress: [{{name: {}, action: Deny, from: [{{namespaces: {{}}}}]}}]\n", "r".repeat(101))),
        "spec.ingress[0].name",
        "at most 100",
    );
}

#[test]
fn cluster_network_policies() {
    assert_field(
        &cnp("  priority: 2000\n  subject: {namespaces: {}}\n"),
        "spec.priority",
        "0-1000",
    );
    assert_field(
        &cnp("  priority: 1\n  subject: {namespaces: {}}\n  ingress: [{action: Accept, from: [{namespaces: {}}], protocols: [{tcp: {}}]}]\n"),
        "spec.ingress[0].protocols[0].tcp.destinationPort",
        "required",
    );
    assert_field(
        &cnp("  priority: 1\n  subject: {namespaces: {}}\n  ingress: [{action: Accept, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 80}}, udp: {destinationPort: {number: 53}}}]}]\n"),
        "spec.ingress[0].protocols[0]",
        "exactly one of tcp, udp, sctp, destinationNamedPort",
    );
    assert_field(
        &cnp("  priority: 1\n  subject: {namespaces: {}}\n  ingress: [{action: Accept, from: [{namespaces: {}}], protocols: [{udp: {destinationPort: {number: 65536}}}]}]\n"),
        "spec.ingress[0].protocols[0].udp.destinationPort.number",
        "1-65535",
    );
    assert_field(
        &cnp("  priority: 1\n  subject: {namespaces: {}}\n  egress: [{action: Deny, to: [{namespaces: {}}], protocols: [{sctp: {destinationPort: {range: {start: 5, end: 5}}}}]}]\n"),
        "spec.egress[0].protocols[0].sctp.destinationPort.range.end",
        "greater than start",
    );
    assert_field(
        &cnp("  priority: 1\n  subject: {namespaces: {}}\n  egress: [{action: Accept, to: [{nodes: {}}], protocols: [{destinationNamedPort: web}]}]\n"),
        "spec.egress[0].to[0]",
        "named ports",
    );
}

fn iface(spec: &str) -> String {
    format!("apiVersion: sluice.dev/v1\nkind: Interface\nmetadata: {{name: port0}}\nspec:\n  backend: \"mem:a\"\n{spec}")
}

#[test]
fn sluice_kinds() {
    assert_field(&iface("  mac: 01:00:5e:00:00:01\n"), "spec.mac", "unicast");
    assert_field(&iface("  mac: 00:00:00:00:00:00\n"), "spec.mac", "unicast");
    assert_field(
        &iface("  mac: 02:00:00:00:00:01\n  mtu: 67\n"),
        "spec.mtu",
        "68-9216, got 67",
    );
    assert_field(
        &iface("  mac: 02:00:00:00:00:01\n  mtu: 9217\n"),
        "spec.mtu",
        "68-9216",
    );
    assert_field(
        &iface("  mac: 02:00:00:00:00:01\n  addresses: [10.0.0.0/24]\n"),
        "spec.addresses[0]",
        "network or broadcast",
    );
    assert_field(
        &iface("  mac: 02:00:00:00:00:01\n  addresses: [224.0.0.1/24]\n"),
        "spec.addresses[0]",
        "unicast",
    );
    assert_field(
        &iface("  mac: 02:00:00:00:00:01\n  addresses: [10.0.0.1/24, 10.0.0.1/16]\n"),
        "spec.addresses[1]",
        "duplicate",
    );
    assert_field(
        &iface("  mac: 02:00:00:00:00:01\n  network: Blue\n"),
        "spec.network",
        "DNS-1123 label",
    );
    let e = refused("apiVersion: sluice.dev/v1\nkind: Interface\nmetadata: {name: p}\nspec: {backend: \"warp:x\", mac: \"02:00:00:00:00:01\"}\n");
    assert_eq!(e.field, "spec.backend");
    assert!(e.message.contains("unknown backend \"warp\""), "{e}");
    let e = refused("apiVersion: sluice.dev/v1\nkind: Interface\nmetadata: {name: p}\nspec: {backend: mem, mac: \"02:00:00:00:00:01\"}\n");
    assert_eq!(e.field, "spec.backend");

    let route = |spec: &str| {
        format!("apiVersion: sluice.dev/v1\nkind: Route\nmetadata: {{name: r}}\nspec:\n{spec}")
    };
    assert_field(
        &route("  destination: 10.0.0.1/24\n  nextHops: [{gateway: 10.0.0.254}]\n"),
        "spec.destination",
        "did you mean 10.0.0.0/24",
    );
    assert_field(
        &route("  destination: 10.0.0.0/24\n  nextHops: [{gateway: \"fd00::1\"}]\n"),
        "spec.nextHops[0].gateway",
        "IPv4 address like the destination",
    );
    assert_field(
        &route("  destination: \"fd00::/64\"\n  nextHops: [{gateway: 10.0.0.1}]\n"),
        "spec.nextHops[0].gateway",
        "IPv6 address",
    );
    assert_field(
        &route("  destination: 10.0.0.0/24\n"),
        "spec.nextHops",
        "at least 1",
    );
    assert_field(
        &route("  destination: 10.0.0.0/24\n  nextHops: [{}]\n"),
        "spec.nextHops[0]",
        "gateway, interface or both",
    );
    assert_field(
        &route(
            "  destination: 10.0.0.0/24\n  type: Blackhole\n  nextHops: [{gateway: 10.0.0.1}]\n",
        ),
        "spec.nextHops",
        "must be empty",
    );
    assert_field(
        &route(
            "  destination: 10.0.0.0/24\n  nextHops: [{gateway: 10.0.0.1}, {gateway: 10.0.0.1}]\n",
        ),
        "spec.nextHops[1]",
        "duplicate",
    );
    assert_field(
        "apiVersion: sluice.dev/v1\nkind: Neighbour\nmetadata: {name: n}\nspec: {ip: 10.0.0.1, mac: \"ff:ff:ff:ff:ff:ff\"}\n",
        "spec.mac",
        "unicast",
    );
    assert_field(
        "apiVersion: sluice.dev/v1\nkind: Neighbour\nmetadata: {name: n}\nspec: {ip: 0.0.0.0, mac: \"02:00:00:00:00:01\"}\n",
        "spec.ip",
        "unicast",
    );

    let bw = |spec: &str| {
        format!("apiVersion: sluice.dev/v1\nkind: Bandwidth\nmetadata: {{name: b, namespace: shop}}\nspec:\n{spec}")
    };
    assert_field(
        &bw("  pod: {name: web-0}\n  ingressRate: 1000000\n"),
        "spec.ingressBurst",
        "required when ingressRate is set",
    );
    assert_field(
        &bw("  pod: {name: web-0}\n  egressBurst: 1000000\n"),
        "spec.egressRate",
        "required when egressBurst is set",
    );
    assert_field(
        &bw("  pod: {name: web-0}\n  egressRate: 0\n  egressBurst: 10\n"),
        "spec.egressRate",
        "greater than 0",
    );
    assert_field(
        &bw("  pod: {name: web-0}\n  egressRate: 10\n  egressBurst: 40000000000\n"),
        "spec.egressBurst",
        "4 GiB",
    );
    assert_field(
        &bw("  ingressRate: 10\n  ingressBurst: 10\n"),
        "spec",
        "exactly one of podSelector, pod",
    );
    assert_field(
        &bw("  pod: {name: web-0}\n"),
        "spec",
        "at least one direction",
    );

    assert_field(
        "apiVersion: sluice.dev/v1\nkind: Chain\nmetadata: {name: c}\nspec: {endpoints: [a, b, a]}\n",
        "spec.endpoints[2]",
        "twice",
    );
    assert_field(
        "apiVersion: sluice.dev/v1\nkind: Chain\nmetadata: {name: c}\nspec: {endpoints: []}\n",
        "spec.endpoints",
        "at least 1",
    );
    let nse = |spec: &str| {
        format!("apiVersion: sluice.dev/v1\nkind: NetworkServiceEndpoint\nmetadata: {{name: e}}\nspec: {spec}\n")
    };
    assert_field(
        &nse("{interfaces: {ingress: \"\", egress: b}}"),
        "spec.interfaces.ingress",
        "required",
    );
    assert_field(
        &nse("{interfaces: {ingress: a, egress: a}}"),
        "spec.interfaces.egress",
        "must differ",
    );
    assert_field(&nse("{networkServiceNames: [s]}"), "spec", "must say what");
    assert_field(
        &nse("{interfaces: {ingress: a, egress: b}, function: {counter: {}}}"),
        "spec",
        "not both",
    );
    assert_field(
        &nse("{function: {counter: {}, nat: {inside: 10.0.0.0/24, outside: 10.1.0.0/24}}}"),
        "spec.function",
        "exactly one",
    );
    assert_field(
        &nse("{function: {nat: {inside: 10.0.0.0/24, outside: 10.1.0.0/16}}}"),
        "spec.function.nat.outside",
        "length",
    );
    assert_field(
        &nse(
            "{function: {loadBalancer: {vip: 10.0.0.1, port: 80, backends: [{ip: \"fd00::1\"}]}}}",
        ),
        "spec.function.loadBalancer.backends[0].ip",
        "family",
    );
    assert_field(
        &nse("{function: {firewall: {rules: [{action: Allow, ports: [{port: 80}]}]}}}"),
        "spec.function.firewall.rules[0].ports",
        "protocol with ports",
    );
    assert_field(
        &nse("{networkServiceNames: [s], networkServiceLabels: {t: {labels: {a: b}}}, function: {counter: {}}}"),
        "spec.networkServiceLabels[t]",
        "not in networkServiceNames",
    );
    assert_field(
        "apiVersion: sluice.dev/v1\nkind: NetworkService\nmetadata: {name: s}\nspec: {matches: [{sourceSelector: {\"a b\": c}}]}\n",
        "spec.matches[0].sourceSelector[a b]",
        "qualified name",
    );
    assert_field(
        "apiVersion: sluice.dev/v1\nkind: NetworkService\nmetadata: {name: s}\nspec: {steering: [{protocol: TCP}]}\n",
        "spec.steering[0]",
        "which traffic",
    );
    assert_field(
        "apiVersion: sluice.dev/v1\nkind: NetworkService\nmetadata: {name: s}\nspec: {steering: [{source: [10.0.0.1/24]}]}\n",
        "spec.steering[0].source[0]",
        "host bits",
    );
    assert_field(
        "apiVersion: sluice.dev/v1\nkind: Chain\nmetadata: {name: c}\nspec: {endpoints: [a], steering: [{interface: x, protocol: GRE}]}\n",
        "spec.steering[0].protocol",
        "TCP, UDP",
    );
    assert_field(
        "apiVersion: sluice.dev/v1\nkind: Chain\nmetadata: {name: c}\nspec: {endpoints: [a], payload: ETHERNET}\n",
        "spec.exit",
        "required for payload ETHERNET",
    );
    assert_field(
        "apiVersion: sluice.dev/v1\nkind: Chain\nmetadata: {name: c}\nspec: {endpoints: [a], payload: ETHERNET, exit: b, steering: [{source: [10.0.0.0/8]}]}\n",
        "spec.steering[0].interface",
        "required for payload ETHERNET",
    );
    assert_field(
        "apiVersion: sluice.dev/v1\nkind: MulticastGroup\nmetadata: {name: g}\nspec: {group: 10.0.0.1, members: []}\n",
        "spec.group",
        "multicast",
    );
    assert_field(
        "apiVersion: sluice.dev/v1\nkind: MulticastGroup\nmetadata: {name: g}\nspec: {group: \"ff02::fb\", members: [a, a]}\n",
        "spec.members[1]",
        "duplicate",
    );
}

#[test]
fn pods_and_nodes() {
    let pod = |spec: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: shop}}\n{spec}")
    };
    assert_field(
        &pod("spec: {containers: [{name: c, ports: [{containerPort: 0}]}]}\n"),
        "spec.containers[0].ports[0].containerPort",
        "1-65535",
    );
    assert_field(
        &pod("spec: {containers: [{name: c, ports: [{containerPort: 80, name: web}, {containerPort: 81, name: web}]}]}\n"),
        "spec.containers[0].ports[1].name",
        "duplicate port name",
    );
    assert_field(
        &pod("spec: {containers: [{name: c, ports: [{containerPort: 80, name: Web}]}]}\n"),
        "spec.containers[0].ports[0].name",
        "IANA_SVC_NAME",
    );
    assert_field(
        &pod(
            "spec: {containers: [{name: c}]}\nstatus: {podIPs: [{ip: 10.0.0.1}, {ip: 10.0.0.2}]}\n",
        ),
        "status.podIPs[1]",
        "one address of each family",
    );
    assert_field(
        &pod("spec: {containers: [{name: c}]}\nstatus: {podIP: 10.0.0.2, podIPs: [{ip: 10.0.0.1}]}\n"),
        "status.podIP",
        "podIPs[0]",
    );
    assert_field(
        &pod("spec: {containers: []}\n"),
        "spec.containers",
        "at least 1",
    );
    let node = |body: &str| format!("apiVersion: v1\nkind: Node\nmetadata: {{name: n}}\n{body}");
    assert_field(
        &node("status: {addresses: [{type: InternalIP, address: node-a}]}\n"),
        "status.addresses[0].address",
        "address",
    );
    assert_field(
        &node("status: {addresses: [{type: Magic, address: x}]}\n"),
        "status.addresses[0].type",
        "InternalIP",
    );
    assert_field(
        &node("spec: {podCIDRs: [10.0.0.0/24, 10.1.0.0/24]}\n"),
        "spec.podCIDRs[1]",
        "one address of each family",
    );
}

// ---- batches and state ----

fn objects(yaml: &str) -> Vec<Change> {
    parse_manifests(yaml)
        .unwrap()
        .into_iter()
        .map(Change::Apply)
        .collect()
}

fn service(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}---\n")
}

#[test]
fn a_batch_with_one_bad_object_is_refused_whole() {
    let mut state = DesiredState::new();
    state.apply(&objects(SLUICE)).unwrap();
    let before: Vec<StoredObject> = state.iter().cloned().collect();
    let rev = state.revision();

    let good = service("a", "  ports: [{port: 80}]\n");
    let bad = service("b", "  ports: [{port: 80, protocol: TCPP}]\n");
    let err = state.apply(&objects(&format!("{good}{bad}"))).unwrap_err();
    assert_eq!(err.object, "Service shop/b");
    assert_eq!(err.field, "spec.ports[0].protocol");
    assert_eq!(state.revision(), rev);
    assert_eq!(state.iter().cloned().collect::<Vec<_>>(), before);
    assert!(state
        .get(&ObjectKey::namespaced(Kind::Service, "shop", "a"))
        .is_none());

    // A delete in a refused batch does not happen either.
    let batch = vec![
        Change::Delete(ObjectKey::cluster(Kind::Route, "blue-sink")),
        Change::Delete(ObjectKey::cluster(Kind::Route, "no-such-route")),
    ];
    let err = state.apply(&batch).unwrap_err();
    assert_eq!(err.object, "Route no-such-route");
    assert!(state
        .get(&ObjectKey::cluster(Kind::Route, "blue-sink"))
        .is_some());
    assert_eq!(state.revision(), rev);
}

#[test]
fn revisions_count_batches() {
    let mut state = DesiredState::new();
    assert_eq!(state.revision(), 0);
    let r1 = state
        .apply(&objects(&service("a", "  ports: [{port: 80}]\n")))
        .unwrap();
    assert_eq!(r1, 1);
    let key = ObjectKey::namespaced(Kind::Service, "shop", "a");
    let r2 = state
        .apply(&objects(&service("b", "  ports: [{port: 80}]\n")))
        .unwrap();
    assert_eq!(r2, 2);
    assert_eq!(state.get(&key).unwrap().revision, 1);
    // Re-applying an identical object keeps its revision; a change moves it.
    state
        .apply(&objects(&service("a", "  ports: [{port: 80}]\n")))
        .unwrap();
    assert_eq!(state.get(&key).unwrap().revision, 1);
    let r4 = state
        .apply(&objects(&service("a", "  ports: [{port: 81}]\n")))
        .unwrap();
    assert_eq!(state.get(&key).unwrap().revision, r4);
    state.apply(&[Change::Delete(key.clone())]).unwrap();
    assert!(state.get(&key).is_none());
    assert_eq!(state.revision(), 5);
}

#[test]
fn duplicates_inside_a_batch_are_refused() {
    let state = DesiredState::new();
    let one = service("a", "  ports: [{port: 80}]\n");
    let e = state
        .check_batch(&objects(&format!("{one}{one}")))
        .unwrap_err();
    assert_eq!(e.object, "Service shop/a");
    assert!(e.message.contains("appears twice"), "{e}");
}

fn conflict(existing: &str, batch: &str) -> ModelError {
    let mut state = DesiredState::new();
    if !existing.is_empty() {
        state.apply(&objects(existing)).unwrap();
    }
    let rev = state.revision();
    let e = state.apply(&objects(batch)).unwrap_err();
    assert_eq!(state.revision(), rev);
    e
}

#[test]
fn service_conflicts() {
    let a = service("a", "  clusterIP: 10.96.0.10\n  ports: [{port: 80}]\n");
    // The same cluster IP, even on another port, in the same batch or later.
    let b = service("b", "  clusterIP: 10.96.0.10\n  ports: [{port: 81}]\n");
    let e = conflict("", &format!("{a}{b}"));
    assert_eq!(
        (e.object.as_str(), e.field.as_str()),
        ("Service shop/b", "spec.clusterIP")
    );
    assert!(
        e.message
            .contains("cluster IP 10.96.0.10 is already used by Service shop/a"),
        "{e}"
    );
    let e = conflict(&a, &b);
    assert_eq!(e.object, "Service shop/b");

    // External IP:port:protocol.
    let x = service("x", "  externalIPs: [192.0.2.1]\n  ports: [{port: 443}]\n");
    let y = service("y", "  externalIPs: [192.0.2.1]\n  ports: [{port: 443}]\n");
    let e = conflict(&x, &y);
    assert_eq!(e.field, "spec.externalIPs[0]");
    assert!(e.message.contains("192.0.2.1:443/TCP"), "{e}");
    // ... sharing the IP on other ports or protocols is fine.
    let z = service("z", "  externalIPs: [192.0.2.1]\n  ports: [{name: a, port: 80}, {name: b, port: 443, protocol: UDP}]\n");
    let mut state = DesiredState::new();
    state.apply(&objects(&format!("{x}{z}"))).unwrap();

    // An external IP that is another Service's cluster IP, same port.
    let w = service("w", "  externalIPs: [10.96.0.10]\n  ports: [{port: 80}]\n");
    let e = conflict(&a, &w);
    assert!(e.message.contains("10.96.0.10:80/TCP"), "{e}");

    // Load-balancer IPs from status.
    let lb = |n: &str| {
        service(n, "  type: LoadBalancer\n  ports: [{port: 80}]\nstatus: {loadBalancer: {ingress: [{ip: 198.51.100.1}]}}\n")
    };
    let e = conflict(&lb("l1"), &lb("l2"));
    assert_eq!(e.field, "status.loadBalancer.ingress[0].ip");

    // Node ports, by protocol.
    let n1 = service(
        "n1",
        "  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n",
    );
    let n2 = service(
        "n2",
        "  type: NodePort\n  ports: [{port: 81, nodePort: 30080}]\n",
    );
    let e = conflict(&n1, &n2);
    assert_eq!(e.field, "spec.ports[0].nodePort");
    assert!(e.message.contains("node port 30080/TCP"), "{e}");
    let n3 = service(
        "n3",
        "  type: NodePort\n  ports: [{port: 81, nodePort: 30080, protocol: UDP}]\n",
    );
    state.apply(&objects(&format!("{n1}{n3}"))).unwrap();

    // Replacing or deleting the holder in the same batch frees the claim.
    let mut state = DesiredState::new();
    state.apply(&objects(&a)).unwrap();
    let a_moved = service("a", "  clusterIP: 10.96.0.11\n  ports: [{port: 80}]\n");
    state.apply(&objects(&format!("{a_moved}{b}"))).unwrap();
    let mut batch = objects(&service(
        "c",
        "  clusterIP: 10.96.0.11\n  ports: [{port: 80}]\n",
    ));
    batch.push(Change::Delete(ObjectKey::namespaced(
        Kind::Service,
        "shop",
        "a",
    )));
    state.apply(&batch).unwrap();
}

const NET_BLUE: &str = "apiVersion: sluice.dev/v1\nkind: Network\nmetadata: {name: blue}\n---\n";

fn interface(name: &str, mac: &str, network: &str) -> String {
    format!("apiVersion: sluice.dev/v1\nkind: Interface\nmetadata: {{name: {name}}}\nspec: {{backend: \"mem:{name}\", mac: \"{mac}\", network: {network}, addresses: [10.0.0.1/24]}}\n---\n")
}

#[test]
fn sluice_conflicts_and_references() {
    // An Interface in an unknown Network.
    let e = conflict("", &interface("p0", "02:00:00:00:00:01", "blue"));
    assert_eq!(
        (e.object.as_str(), e.field.as_str()),
        ("Interface p0", "spec.network")
    );
    assert!(
        e.message
            .contains("refers to Network \"blue\", which does not exist"),
        "{e}"
    );
    // ... fine with the Network in the same batch, or in the "default" one.
    let mut state = DesiredState::new();
    state
        .apply(&objects(&format!(
            "{NET_BLUE}{}",
            interface("p0", "02:00:00:00:00:01", "blue")
        )))
        .unwrap();
    state
        .apply(&objects(&interface("d0", "02:00:00:00:00:0d", "default")))
        .unwrap();

    // Two Interfaces with one MAC.
    let e = state
        .apply(&objects(&interface("p1", "02:00:00:00:00:01", "default")))
        .unwrap_err();
    assert_eq!(
        (e.object.as_str(), e.field.as_str()),
        ("Interface p1", "spec.mac")
    );
    assert!(
        e.message
            .contains("MAC 02:00:00:00:00:01 is already used by Interface p0"),
        "{e}"
    );

    // The same address twice in one network (but fine in two networks).
    let e = state
        .apply(&objects(&interface("p2", "02:00:00:00:00:02", "blue")))
        .unwrap_err();
    assert_eq!(e.field, "spec.addresses[0]");
    assert!(
        e.message.contains("address 10.0.0.1 in network \"blue\""),
        "{e}"
    );

    // A Route to an unknown Network, through an unknown Interface, or
    // through an Interface of another network.
    let route = |net: &str, via: &str| {
        format!("apiVersion: sluice.dev/v1\nkind: Route\nmetadata: {{name: r}}\nspec: {{network: {net}, destination: 0.0.0.0/0, nextHops: [{{gateway: 10.0.0.254, interface: {via}}}]}}\n")
    };
    let e = state.apply(&objects(&route("red", "p0"))).unwrap_err();
    assert_eq!((e.field.as_str()), "spec.network");
    let e = state.apply(&objects(&route("blue", "p9"))).unwrap_err();
    assert_eq!(e.field, "spec.nextHops[0].interface");
    assert!(
        e.message.contains("Interface \"p9\", which does not exist"),
        "{e}"
    );
    let e = state.apply(&objects(&route("blue", "d0"))).unwrap_err();
    assert_eq!(e.field, "spec.nextHops[0].interface");
    assert!(
        e.message
            .contains("is in network \"default\", not \"blue\""),
        "{e}"
    );
    state.apply(&objects(&route("blue", "p0"))).unwrap();

    // Two routes to one destination in one network.
    let e = state
        .apply(&objects("apiVersion: sluice.dev/v1\nkind: Route\nmetadata: {name: r2}\nspec: {network: blue, destination: 0.0.0.0/0, type: Blackhole}\n"))
        .unwrap_err();
    assert_eq!(e.field, "spec.destination");
    assert!(e.message.contains("already used by Route r"), "{e}");

    // Deleting a Network still used, or an Interface a Route goes through.
    let blue = ObjectKey::cluster(Kind::Network, "blue");
    let e = state.apply(&[Change::Delete(blue.clone())]).unwrap_err();
    assert_eq!(e.object, "Network blue");
    assert!(
        e.message
            .contains("cannot be deleted: Interface p0 still uses it (and 1 more)"),
        "{e}"
    );
    let p0 = ObjectKey::cluster(Kind::Interface, "p0");
    let e = state.apply(&[Change::Delete(p0.clone())]).unwrap_err();
    assert!(e.message.contains("Route r still uses it"), "{e}");
    // Moving the Interface out of the Route's network is refused too.
    let e = state
        .apply(&objects(
            &interface("p0", "02:00:00:00:00:01", "default").replace("10.0.0.1/24", "10.9.0.1/24"),
        ))
        .unwrap_err();
    assert_eq!(
        (e.object.as_str(), e.field.as_str()),
        ("Interface p0", "spec.network")
    );
    // A batch that re-points a user at the deleted object is refused on the
    // user; deleting every user with it is accepted.
    let mut batch = objects(&route("blue", "p0").replace("p0}", "p0, gateway: 10.0.0.253}"));
    batch.push(Change::Delete(p0.clone()));
    let e = state.apply(&batch).unwrap_err();
    assert!(e.message.contains("which this batch deletes"), "{e}");
    let rev = state.revision();
    state
        .apply(&[
            Change::Delete(ObjectKey::cluster(Kind::Route, "r")),
            Change::Delete(p0),
            Change::Delete(blue),
        ])
        .unwrap();
    assert_eq!(state.revision(), rev + 1);
    assert_eq!(state.len(), 1);
}

#[test]
fn network_service_references() {
    let e = conflict(
        "",
        "apiVersion: sluice.dev/v1\nkind: NetworkService\nmetadata: {name: s}\nspec: {steering: [{interface: nope}]}\n",
    );
    assert_eq!(e.field, "spec.steering[0].interface");
    let e = conflict(
        "",
        "apiVersion: sluice.dev/v1\nkind: NetworkServiceEndpoint\nmetadata: {name: e}\nspec: {interfaces: {ingress: a, egress: b}}\n",
    );
    assert_eq!(e.field, "spec.interfaces.ingress");
    let e = conflict(
        "",
        "apiVersion: sluice.dev/v1\nkind: Chain\nmetadata: {name: c}\nspec: {endpoints: [fw]}\n",
    );
    assert_eq!(e.field, "spec.endpoints[0]");
    let mut state = DesiredState::new();
    state.apply(&objects(SLUICE)).unwrap();
    let e = state
        .apply(&[Change::Delete(ObjectKey::cluster(
            Kind::NetworkServiceEndpoint,
            "firewall-1",
        ))])
        .unwrap_err();
    assert!(
        e.message.contains("Chain secure-web-chain still uses it"),
        "{e}"
    );
}

#[test]
fn list_with_label_selectors() {
    let pods = [
        ("a", "shop", "app: web, tier: front"),
        ("b", "shop", "app: web, tier: back"),
        ("c", "shop", "app: db"),
        ("d", "other", "app: web"),
    ]
    .iter()
    .map(|(n, ns, labels)| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {n}, namespace: {ns}, labels: {{{labels}}}}}\nspec: {{containers: [{{name: c}}]}}\n---\n")
    })
    .collect::<String>();
    let mut state = DesiredState::new();
    state.apply(&objects(&format!("{pods}{NET_BLUE}"))).unwrap();
    let names = |ns: Option<&str>, sel: Option<&str>| -> Vec<String> {
        state
            .list(Kind::Pod, ns, sel)
            .unwrap()
            .iter()
            .map(|s| s.object.key().to_string())
            .collect()
    };
    assert_eq!(names(None, None).len(), 4);
    assert_eq!(names(Some("shop"), None).len(), 3);
    assert_eq!(
        names(None, Some("app=web")),
        ["Pod other/d", "Pod shop/a", "Pod shop/b"]
    );
    assert_eq!(
        names(Some("shop"), Some("app=web,tier!=back")),
        ["Pod shop/a"]
    );
    assert_eq!(
        names(Some("shop"), Some("app in (db, cache)")),
        ["Pod shop/c"]
    );
    assert_eq!(names(Some("shop"), Some("!tier")), ["Pod shop/c"]);
    assert_eq!(
        names(Some("shop"), Some("tier")),
        ["Pod shop/a", "Pod shop/b"]
    );
    assert_eq!(names(Some("shop"), Some("app notin (web)")), ["Pod shop/c"]);
    assert_eq!(state.list(Kind::Network, None, None).unwrap().len(), 1);
    assert_eq!(
        state.list(Kind::Network, Some("shop"), None).unwrap().len(),
        1
    );
    assert!(state.list(Kind::Service, None, None).unwrap().is_empty());
    let e = state.list(Kind::Pod, None, Some("app in web")).unwrap_err();
    assert_eq!(e.object, "label selector \"app in web\"");
}

#[test]
fn restore_rebuilds_indexes_and_revisions() {
    let mut state = DesiredState::new();
    state.apply(&objects(SLUICE)).unwrap();
    state
        .apply(&objects(&service(
            "a",
            "  clusterIP: 10.96.0.10\n  ports: [{port: 80}]\n",
        )))
        .unwrap();
    let saved: Vec<(Object, u64)> = state
        .iter()
        .map(|s| (s.object.clone(), s.revision))
        .collect();
    let restored = DesiredState::restore(state.revision(), saved).unwrap();
    assert_eq!(restored.revision(), 2);
    assert_eq!(
        restored.iter().cloned().collect::<Vec<_>>(),
        state.iter().cloned().collect::<Vec<_>>()
    );
    // The claim index came back: the cluster IP is still taken.
    let mut restored = restored;
    let e = restored
        .apply(&objects(&service(
            "b",
            "  clusterIP: 10.96.0.10\n  ports: [{port: 81}]\n",
        )))
        .unwrap_err();
    assert_eq!(e.field, "spec.clusterIP");
}

#[test]
#[should_panic(expected = "revision it was checked against")]
fn a_stale_plan_cannot_be_committed() {
    let mut state = DesiredState::new();
    let plan = state.check_batch(&objects(NET_BLUE)).unwrap();
    state
        .apply(&objects(&service("a", "  ports: [{port: 80}]\n")))
        .unwrap();
    state.commit(plan);
}

#[test]
fn empty_values_and_server_fields_are_not_unknown() {
    let text = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  labels: {}
  annotations: {}
  uid: 3f1c2a8e-5b7d-4c2e-9a61-0d8f4e2b7c11
  resourceVersion: "4711"
  generation: 1
  creationTimestamp: "2025-01-02T03:04:05Z"
  managedFields:
  - manager: kubectl-client-side-apply
    operation: Update
    apiVersion: v1
    time: "2025-01-02T03:04:05Z"
    fieldsType: FieldsV1
    fieldsV1:
      f:spec:
        f:ports: {}
spec:
  externalIPs: []
  selector: {}
  ports: [{port: 80}]
status:
  loadBalancer: {}
  conditions: []
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all, namespace: shop}
spec:
  podSelector: {}
  ingress: [{}]
  egress: [{to: [], ports: []}]
"#;
    for o in parse_manifests(text).unwrap() {
        validate(&o).unwrap();
        round_trips(&o);
    }
}
