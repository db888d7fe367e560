//! The API in-process: a Controller on a temporary store, the service on a
//! temporary Unix socket (and a TLS TCP listener), and the generated Rust
//! client applying real manifests.

mod common;

use common::{make_certs, tempdir, MIXED};
use sluice_control::api::client::{connect, ClientTls};
use sluice_control::api::listen::{ListenAddr, Listener, TlsFiles};
use sluice_control::api::pb::control_client::ControlClient;
use sluice_control::api::pb::{self, EventType};
use sluice_control::api::{
    ControlService, DataplaneSnapshot, StatsFeed, ERROR_FIELD_METADATA, ERROR_OBJECT_METADATA,
};
use sluice_control::compile::{NodeContext, PortDecl};
use sluice_control::controller::Controller;
use sluice_control::ctl::read_documents;
use sluice_dataplane::engine::{Engine, EngineConfig};
use sluice_dataplane::io::mem::{MemPort, MemPortConfig};
use sluice_dataplane::io::Port;
use sluice_dataplane::stages::router;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::Code;

struct Fixture {
    dir: PathBuf,
    controller: Arc<Controller>,
    addr: String,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<Result<(), String>>,
    engine: Option<Arc<Engine>>,
}

fn node() -> NodeContext {
    let mut ctx = NodeContext {
        ports: vec![
            PortDecl {
                name: "p0".into(),
                backend: "mem:p0".into(),
            },
            PortDecl {
                name: "p1".into(),
                backend: "mem:p1".into(),
            },
        ],
        ..Default::default()
    };
    ctx.node.name = "test-node".into();
    ctx
}

impl Fixture {
    /// A controller on a fresh store and the service on a Unix socket; with
    /// `dataplane`, one worker on two in-memory ports runs on the
    /// controller's tables.
    async fn start(dataplane: bool) -> Fixture {
        Fixture::start_on(dataplane, None).await
    }

    async fn start_on(dataplane: bool, tls: Option<TlsFiles>) -> Fixture {
        let dir = tempdir("api");
        let controller = Arc::new(Controller::open(&dir.join("state"), node()).unwrap());
        let (shutdown, stop) = watch::channel(false);
        let mut service = ControlService::new(controller.clone(), stop.clone());
        let mut engine = None;
        if dataplane {
            let ports: Vec<Arc<dyn Port>> = (0..2u16)
                .map(|i| {
                    MemPort::sink(
                        &format!("p{i}"),
                        MemPortConfig {
                            port_id: i,
                            ..MemPortConfig::default()
                        },
                    ) as Arc<dyn Port>
                })
                .collect();
            let e = Arc::new(
                Engine::start_with_cell(
                    ports,
                    controller.tables().clone(),
                    &EngineConfig::default(),
                    router,
                )
                .unwrap(),
            );
            let weak = Arc::downgrade(&e);
            let feed: StatsFeed = Arc::new(move || {
                weak.upgrade().map(|e| DataplaneSnapshot {
                    workers: e.worker_stats(),
                    ports: e.port_stats(),
                })
            });
            service = service.with_stats(feed);
            engine = Some(e);
        }
        let listen = match &tls {
            Some(_) => ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()),
            None => ListenAddr::Unix(dir.join("api.sock")),
        };
        let listener = Listener::bind(&listen, tls.as_ref()).await.unwrap();
        let addr = match listener.local_addr() {
            ListenAddr::Unix(p) => format!("unix:{}", p.display()),
            ListenAddr::Tcp(a) => format!("https://{a}"),
        };
        let mut stop = stop;
        let server = tokio::spawn(listener.serve(service, async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
        Fixture {
            dir,
            controller,
            addr,
            shutdown,
            server,
            engine,
        }
    }

    async fn client(&self) -> ControlClient<Channel> {
        connect(&self.addr, &ClientTls::default()).await.unwrap()
    }

    async fn stop(self) {
        self.shutdown.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("the server stops once streams end")
            .unwrap()
            .unwrap();
        if let Some(e) = self.engine {
            Arc::try_unwrap(e).ok().unwrap().stop();
        }
        if self.addr.starts_with("unix:") {
            assert!(
                !self.dir.join("api.sock").exists(),
                "the socket is removed at shutdown"
            );
        }
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn objects(yaml: &str) -> Vec<pb::Object> {
    read_documents(yaml, "test")
        .unwrap()
        .iter()
        .map(|d| d.to_object())
        .collect()
}

fn apply(yaml: &str, dry_run: bool) -> pb::ApplyRequest {
    pb::ApplyRequest {
        objects: objects(yaml),
        dry_run,
        wait: false,
    }
}

fn key(kind: &str, ns: &str, name: &str) -> pb::ObjectKey {
    pb::ObjectKey {
        kind: kind.into(),
        namespace: ns.into(),
        name: name.into(),
    }
}

async fn revision(c: &mut ControlClient<Channel>) -> u64 {
    c.health(pb::HealthRequest {})
        .await
        .unwrap()
        .into_inner()
        .revision
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_manifests_apply_and_read_back() {
    let f = Fixture::start(false).await;
    let mut c = f.client().await;
    let r = c.apply(apply(MIXED, false)).await.unwrap().into_inner();
    assert_eq!(r.revision, 1);
    assert_eq!(
        r.generation, 2,
        "the first publish after the start-up tables"
    );
    assert!(!r.dry_run);
    let keys: Vec<String> = r
        .keys
        .iter()
        .map(|k| format!("{}/{}/{}", k.kind, k.namespace, k.name))
        .collect();
    assert_eq!(
        keys,
        [
            "Namespace//shop",
            "Service/shop/web",
            "EndpointSlice/shop/web-abc12",
            "NetworkPolicy/shop/web-from-frontend",
            "Interface//p0",
            "Interface//p1",
            "Route//to-20",
        ]
    );

    // Get returns the object as applied.
    let got = c
        .get(pb::GetRequest {
            key: Some(key("Service", "shop", "web")),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.revision, 1);
    let o = got.object.unwrap();
    assert_eq!(o.revision, 1);
    let v: serde_json::Value = serde_json::from_str(&o.json).unwrap();
    assert_eq!(v["spec"]["clusterIP"], "10.96.0.10");
    assert_eq!(v["spec"]["ports"][0]["targetPort"], 8080);
    // A namespaced kind with no namespace is looked up in "default".
    let e = c
        .get(pb::GetRequest {
            key: Some(key("Service", "", "web")),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(
        e.message().contains("Service default/web"),
        "{}",
        e.message()
    );

    // List: one kind, all kinds, by namespace, by label selector.
    let list = |kind: &str, ns: &str, sel: &str| pb::ListRequest {
        kind: kind.into(),
        namespace: ns.into(),
        label_selector: sel.into(),
    };
    let all = c.list(list("", "", "")).await.unwrap().into_inner();
    assert_eq!(all.objects.len(), 7);
    assert_eq!(all.revision, 1);
    let ifaces = c
        .list(list("Interface", "", "role=uplink"))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = ifaces
        .objects
        .iter()
        .map(|o| o.key.clone().unwrap().name)
        .collect();
    assert_eq!(names, ["p0"]);
    let notin = c
        .list(list("Interface", "", "role notin (uplink)"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(notin.objects.len(), 1);
    assert_eq!(notin.objects[0].key.clone().unwrap().name, "p1");
    let svc = c
        .list(list("Service", "shop", "tier=front,app.kubernetes.io/name"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(svc.objects.len(), 1);
    assert!(c
        .list(list("Service", "other", ""))
        .await
        .unwrap()
        .into_inner()
        .objects
        .is_empty());
    let e = c.list(list("Service", "", "a in (")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("label selector"), "{}", e.message());
    let e = c.list(list("Deployment", "", "")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // The route is in the tables the controller published.
    let t = f.controller.tables().load();
    assert!(t.networks[0].fib4.lookup(0x1400_0001).is_some());

    let v = c.version(pb::VersionRequest {}).await.unwrap().into_inner();
    assert_eq!(v.api, "sluice.v1");
    assert_eq!(v.version, env!("CARGO_PKG_VERSION"));
    assert!(v.kinds.iter().any(|k| k.kind == "EndpointSlice"
        && k.api_version == "discovery.k8s.io/v1"
        && k.namespaced));
    let h = c.health(pb::HealthRequest {}).await.unwrap().into_inner();
    assert!(h.serving);
    assert_eq!((h.revision, h.generation), (1, 2));
    assert_eq!(h.node, "test-node");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_change_nothing_and_say_why() {
    let f = Fixture::start(false).await;
    let mut c = f.client().await;
    c.apply(apply(MIXED, false)).await.unwrap();
    let before = c
        .list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner();
    let gen = f.controller.generations().0;

    // A kind Sluice does not handle: refused, naming the kind.
    let e = c
        .apply(apply(&format!("{MIXED}---\n{DEPLOYMENT}"), false))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("\"Deployment\""), "{}", e.message());
    assert!(
        e.message().starts_with("objects[7]: kind: "),
        "{}",
        e.message()
    );

    // A bad field in the middle of a good batch: the whole batch is refused
    // with the object, the field path and what was expected.
    let bad = MIXED
        .replace("port: 80\n", "port: 80000\n")
        .replace("name: to-20", "name: to-20-new");
    let e = c.apply(apply(&bad, false)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let m = e.message();
    assert_eq!(
        m, "Service shop/web: spec.ports[0].port: must be 1-65535, got 80000",
        "{m}"
    );
    assert_eq!(
        e.metadata().get(ERROR_FIELD_METADATA).unwrap(),
        "spec.ports[0].port"
    );
    assert_eq!(
        e.metadata().get(ERROR_OBJECT_METADATA).unwrap(),
        "Service shop/web"
    );

    // An unknown field.
    let typo = MIXED.replace("clusterIP: 10.96.0.10", "clusterIp: 10.96.0.10");
    let e = c.apply(apply(&typo, false)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("spec.clusterIp"), "{}", e.message());

    // A state the compiler refuses: a gateway no interface reaches.
    let unreachable = "apiVersion: sluice.dev/v1\nkind: Route\nmetadata: {name: r2}\nspec: {destination: 30.0.0.0/8, nextHops: [{gateway: 192.168.9.9}]}\n";
    let e = c.apply(apply(unreachable, false)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message()
            .starts_with("Route r2: spec.nextHops[0].gateway: "),
        "{}",
        e.message()
    );

    // Not JSON; a key that disagrees with the manifest; an empty batch.
    let e = c
        .apply(pb::ApplyRequest {
            objects: vec![pb::Object {
                key: None,
                json: "{".into(),
                revision: 0,
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        e.message().starts_with("objects[0]: json: not valid JSON"),
        "{}",
        e.message()
    );
    let mut wrong = objects(MIXED);
    wrong[1].key = Some(key("Service", "shop", "not-web"));
    let e = c
        .apply(pb::ApplyRequest {
            objects: wrong,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("Service shop/not-web"),
        "{}",
        e.message()
    );
    let e = c.apply(pb::ApplyRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Deleting something that is not there, in a batch with something that is.
    let e = c
        .delete(pb::DeleteRequest {
            keys: vec![key("Route", "", "to-20"), key("Route", "", "nope")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("Route nope"), "{}", e.message());
    let e = c
        .delete(pb::DeleteRequest {
            keys: vec![key("Route", "x", "to-20")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("keys[0].namespace"), "{}", e.message());

    // Nothing changed: same revision, same objects, same tables.
    let after = c
        .list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, before);
    assert_eq!(revision(&mut c).await, 1);
    assert_eq!(f.controller.generations().0, gen);
    let mut history = c
        .watch(pb::WatchRequest { from_revision: 1 })
        .await
        .unwrap()
        .into_inner();
    let nothing = tokio::time::timeout(Duration::from_millis(300), history.message()).await;
    assert!(nothing.is_err(), "no change was recorded after revision 1");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_report_and_change_nothing() {
    let f = Fixture::start(false).await;
    let mut c = f.client().await;
    let r = c.apply(apply(MIXED, true)).await.unwrap().into_inner();
    assert!(r.dry_run);
    assert_eq!((r.revision, r.generation), (1, 0));
    assert_eq!(r.keys.len(), 7);
    assert_eq!(revision(&mut c).await, 0);
    assert!(c
        .list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .objects
        .is_empty());
    // A dry run checks as much as a real one.
    let e = c
        .apply(apply(&MIXED.replace("10.0.1.254", "192.168.9.9"), true))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    c.apply(apply(MIXED, false)).await.unwrap();
    let d = c
        .delete(pb::DeleteRequest {
            keys: vec![key("Route", "", "to-20")],
            dry_run: true,
            wait: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((d.revision, d.generation, d.dry_run), (2, 0, true));
    assert_eq!(revision(&mut c).await, 1);
    assert!(c
        .get(pb::GetRequest {
            key: Some(key("Route", "", "to-20"))
        })
        .await
        .is_ok());
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_changes_in_order_from_a_revision() {
    let f = Fixture::start(false).await;
    let mut c = f.client().await;
    c.apply(apply(MIXED, false)).await.unwrap(); // revision 1

    // From revision 0: the first batch's seven additions.
    let mut from0 = c
        .watch(pb::WatchRequest { from_revision: 0 })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..7 {
        let e = from0.message().await.unwrap().unwrap();
        assert_eq!(e.revision, 1);
        assert_eq!(e.r#type(), EventType::Added);
    }
    // From revision 1: only what comes next.
    let mut from1 = c
        .watch(pb::WatchRequest { from_revision: 1 })
        .await
        .unwrap()
        .into_inner();

    let route = |gw: &str| {
        format!(
            "apiVersion: sluice.dev/v1\nkind: Route\nmetadata: {{name: to-20}}\nspec: {{destination: 20.0.0.0/8, nextHops: [{{gateway: {gw}}}]}}\n"
        )
    };
    let extra = "apiVersion: sluice.dev/v1\nkind: Route\nmetadata: {name: to-30, labels: {tier: b}}\nspec: {destination: 30.0.0.0/8, nextHops: [{gateway: 10.0.1.254}]}\n";
    c.apply(apply(&route("10.0.1.253"), false)).await.unwrap(); // 2: MODIFIED
    c.apply(apply(extra, false)).await.unwrap(); // 3: ADDED
    c.delete(pb::DeleteRequest {
        keys: vec![key("Route", "", "to-20"), key("Route", "", "to-30")],
        ..Default::default()
    })
    .await
    .unwrap(); // 4: DELETED x2
    let expected = [
        (2, EventType::Modified, "to-20"),
        (3, EventType::Added, "to-30"),
        (4, EventType::Deleted, "to-20"),
        (4, EventType::Deleted, "to-30"),
    ];
    for stream in [&mut from0, &mut from1] {
        for (rev, kind, name) in expected {
            let e = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .expect("the event arrives")
                .unwrap()
                .unwrap();
            assert_eq!(
                (e.revision, e.r#type(), e.key.clone().unwrap().name.as_str()),
                (rev, kind, name)
            );
            assert_eq!(e.key.unwrap().kind, "Route");
            if kind == EventType::Deleted {
                assert!(e.json.is_empty());
            } else {
                let v: serde_json::Value = serde_json::from_str(&e.json).unwrap();
                assert_eq!(v["metadata"]["name"], name);
            }
        }
    }
    // A refused batch makes no event: the next event is the next batch's.
    let _ = c.apply(apply(DEPLOYMENT, false)).await.unwrap_err();
    c.apply(apply(extra, false)).await.unwrap(); // 5
    let e = from1.message().await.unwrap().unwrap();
    assert_eq!((e.revision, e.r#type()), (5, EventType::Added));

    // Shutting down ends open watches rather than waiting on them.
    f.stop().await;
    let end = tokio::time::timeout(Duration::from_secs(10), from1.message())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None) | Err(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_ports_workers_and_generations() {
    let f = Fixture::start(true).await;
    let mut c = f.client().await;
    let r = c
        .apply(pb::ApplyRequest {
            objects: objects(MIXED),
            dry_run: false,
            wait: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.generation, 2);
    assert_eq!(
        r.running_generation, 2,
        "with wait, the reply comes once every worker runs the new tables"
    );
    let s = c
        .get_stats(pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(s.dataplane);
    assert_eq!(s.revision, 1);
    assert_eq!(
        s.generations,
        Some(pb::Generations {
            newest: 2,
            oldest_running: 2
        })
    );
    assert_eq!(s.workers.len(), 1);
    assert_eq!(s.workers[0].generation, 2);
    let ports: Vec<_> = s
        .ports
        .iter()
        .map(|p| (p.id, p.name.as_str(), p.backend.as_str(), p.driver.as_str()))
        .collect();
    assert_eq!(
        ports,
        [(0, "p0", "mem:p0", "mem"), (1, "p1", "mem:p1", "mem")]
    );
    assert!(s.totals.unwrap().polls > 0);

    let mut feed = c
        .stream_stats(pb::StreamStatsRequest { interval_ms: 100 })
        .await
        .unwrap()
        .into_inner();
    let a = feed.message().await.unwrap().unwrap();
    let b = feed.message().await.unwrap().unwrap();
    assert!(b.unix_time_ms >= a.unix_time_ms);
    assert!(b.totals.unwrap().polls >= a.totals.unwrap().polls);
    let h = c.health(pb::HealthRequest {}).await.unwrap().into_inner();
    assert_eq!((h.workers, h.running_generation), (1, 2));
    drop(feed);
    f.stop().await;
}

/// Pod bandwidth limits from annotations and Bandwidth objects appear in
/// the stats with their counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_list_pod_bandwidth_limits() {
    let f = Fixture::start(true).await;
    let mut c = f.client().await;
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
  labels: {app: web}
  annotations: {kubernetes.io/egress-bandwidth: 10M}
spec: {containers: [{name: c, image: x}]}
status: {podIPs: [{ip: 10.1.0.5}]}
---
apiVersion: sluice.dev/v1
kind: Bandwidth
metadata: {name: db-limit, namespace: default}
spec: {pod: {name: db}, ingressRate: 5000000, ingressBurst: 50000, mode: Police}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: default}
spec: {containers: [{name: c, image: x}]}
status: {podIPs: [{ip: 10.1.0.6}]}
"#;
    c.apply(pb::ApplyRequest {
        objects: objects(yaml),
        dry_run: false,
        wait: true,
    })
    .await
    .unwrap();
    let s = c
        .get_stats(pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    let rows: Vec<_> = s
        .bandwidth
        .iter()
        .map(|b| {
            (
                b.pod.as_str(),
                b.direction.as_str(),
                b.rate_bps,
                b.burst_bits,
                b.mode.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("default/db", "ingress", 5_000_000, 50_000, "Police"),
            (
                "default/web",
                "egress",
                10_000_000,
                u32::MAX as u64,
                "Shape"
            ),
        ]
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_needs_tls_and_client_certificates_when_asked() {
    let dir = tempdir("tls");
    let certs = make_certs(&dir);
    // No TLS, no TCP listener.
    let e = Listener::bind(&ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()), None)
        .await
        .err()
        .unwrap();
    assert!(e.contains("needs TLS"), "{e}");

    let f = Fixture::start_on(
        false,
        Some(TlsFiles {
            cert: certs.server_cert.clone(),
            key: certs.server_key.clone(),
            client_ca: Some(certs.ca.clone()),
        }),
    )
    .await;
    let with = |cert: Option<&PathBuf>, key: Option<&PathBuf>| ClientTls {
        ca: Some(certs.ca.clone()),
        cert: cert.cloned(),
        key: key.cloned(),
        domain: None,
    };
    // A client with a certificate from the daemon's CA gets in.
    let mut c = connect(
        &f.addr,
        &with(Some(&certs.client_cert), Some(&certs.client_key)),
    )
    .await
    .unwrap();
    let r = c.apply(apply(MIXED, false)).await.unwrap().into_inner();
    assert_eq!(r.revision, 1);
    // Without one, or with one from another CA, it does not.
    for tls in [
        with(None, None),
        with(Some(&certs.rogue_cert), Some(&certs.rogue_key)),
    ] {
        let refused = match connect(&f.addr, &tls).await {
            Err(_) => true,
            Ok(mut c) => c.health(pb::HealthRequest {}).await.is_err(),
        };
        assert!(refused, "a client without a trusted certificate is refused");
    }
    // Plain text to a TLS port fails too.
    let plain = connect(
        &f.addr.replace("https://", "http://"),
        &ClientTls::default(),
    )
    .await;
    if let Ok(mut c) = plain {
        assert!(c.health(pb::HealthRequest {}).await.is_err());
    }
    f.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}

const POLICY: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: web}}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.244.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: client}}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.244.0.11}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: 80}]}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_the_deciding_rule() {
    let f = Fixture::start(false).await;
    let mut c = f.client().await;
    c.apply(apply(POLICY, false)).await.unwrap();
    let ask = |from: &str, port: u32| pb::ExplainRequest {
        from: from.into(),
        to: "x/a".into(),
        protocol: "tcp".into(),
        port,
        network: String::new(),
    };
    let r = c.explain(ask("x/b", 80)).await.unwrap().into_inner();
    assert!(r.allowed);
    assert_eq!(r.to_address, "10.244.0.10");
    let rule = r.rule.unwrap();
    assert_eq!(
        (rule.policy.as_str(), rule.tier.as_str(), rule.index),
        ("NetworkPolicy x/web", "NetworkPolicy", 0)
    );
    let r = c.explain(ask("192.0.2.1", 80)).await.unwrap().into_inner();
    assert!(!r.allowed);
    assert_eq!(r.rule.unwrap().index, -1, "denied by isolation");
    let e = c.explain(ask("x/nobody", 80)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("Pod x/nobody"), "{}", e.message());
    let rules = c
        .list_policy_rules(pb::ListPolicyRulesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rules.rules.len(), 2, "the allow rule and the isolation");
    f.stop().await;
}

/// A MultiNetworkPolicy for Network red, over pods on another node (so
/// their attachments need no port here).
const MULTI_POLICY: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: sluice.dev/v1
kind: Network
metadata: {name: red}
spec: {}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: red-net, namespace: x}
spec: {config: '{"cniVersion":"1.0.0","type":"sluice","network":"red"}'}
---
apiVersion: v1
kind: Pod
metadata:
  name: a
  namespace: x
  labels: {app: web}
  annotations:
    k8s.v1.cni.cncf.io/networks: red-net
    k8s.v1.cni.cncf.io/network-status: '[{"name":"x/red-net","interface":"net1","ips":["10.10.0.10"]}]'
spec: {nodeName: elsewhere, containers: [{name: c, image: i}]}
status: {podIP: 10.244.0.10}
---
apiVersion: v1
kind: Pod
metadata:
  name: b
  namespace: x
  labels: {app: client}
  annotations:
    k8s.v1.cni.cncf.io/networks: red-net
    k8s.v1.cni.cncf.io/network-status: '[{"name":"x/red-net","interface":"net1","ips":["10.10.0.11"]}]'
spec: {nodeName: elsewhere, containers: [{name: c, image: i}]}
status: {podIP: 10.244.0.11}
---
apiVersion: k8s.cni.cncf.io/v1beta1
kind: MultiNetworkPolicy
metadata:
  name: web-red
  namespace: x
  annotations: {k8s.v1.cni.cncf.io/policy-for: red-net}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: 80}]}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_network_policies_apply_read_back_count_and_explain_per_network() {
    let f = Fixture::start(false).await;
    let mut c = f.client().await;
    // Without its annotation the policy is refused, naming the field.
    let bad = MULTI_POLICY.replace(
        "  annotations: {k8s.v1.cni.cncf.io/policy-for: red-net}\n",
        "",
    );
    let e = c.apply(apply(&bad, false)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("MultiNetworkPolicy x/web-red")
            && e.message()
                .contains("metadata.annotations[k8s.v1.cni.cncf.io/policy-for]"),
        "{}",
        e.message()
    );
    c.apply(apply(MULTI_POLICY, false)).await.unwrap();
    let got = c
        .get(pb::GetRequest {
            key: Some(key("MultiNetworkPolicy", "x", "web-red")),
        })
        .await
        .unwrap()
        .into_inner();
    let v: serde_json::Value = serde_json::from_str(&got.object.unwrap().json).unwrap();
    assert_eq!(v["apiVersion"], "k8s.cni.cncf.io/v1beta1");
    assert_eq!(
        v["metadata"]["annotations"]["k8s.v1.cni.cncf.io/policy-for"],
        "red-net"
    );

    // The rules are listed with their network.
    let rules = c
        .list_policy_rules(pb::ListPolicyRulesRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<(&str, i32)> = rules
        .rules
        .iter()
        .map(|r| (r.policy.as_str(), r.index))
        .collect();
    assert_eq!(
        names,
        [
            ("MultiNetworkPolicy x/web-red (network red)", -1),
            ("MultiNetworkPolicy x/web-red (network red)", 0),
        ]
    );

    // Explain in red: pods are their red addresses.
    let ask = |network: &str, port: u32| pb::ExplainRequest {
        from: "x/b".into(),
        to: "x/a".into(),
        protocol: "tcp".into(),
        port,
        network: network.into(),
    };
    let r = c.explain(ask("red", 80)).await.unwrap().into_inner();
    assert!(r.allowed);
    assert_eq!(
        (r.from_address.as_str(), r.to_address.as_str()),
        ("10.10.0.11", "10.10.0.10")
    );
    assert_eq!(r.rule.unwrap().index, 0);
    let r = c.explain(ask("red", 22)).await.unwrap().into_inner();
    assert!(!r.allowed);
    // The pod network has no policy: pod IPs, allowed by default.
    let r = c.explain(ask("", 22)).await.unwrap().into_inner();
    assert!(r.allowed && r.rule.is_none());
    assert_eq!(r.to_address, "10.244.0.10");
    let e = c.explain(ask("blue", 80)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("no Network \"blue\""),
        "{}",
        e.message()
    );
    f.stop().await;
}
