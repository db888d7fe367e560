//! One change through the whole control plane: `Controller::apply` of a
//! one-Route batch (check, compile, durable commit, publish) until every
//! worker runs the new generation, with N routes already in the state.
//!
//! The compiler rebuilds every table on each batch today, so this grows
//! with N; the numbers show where incremental compilation has to start.

use criterion::{criterion_group, criterion_main, Criterion};
use sluice_control::compile::{NodeContext, PortDecl};
use sluice_control::controller::Controller;
use sluice_control::model::{parse_manifests, Change};
use sluice_dataplane::engine::{Engine, EngineConfig};
use sluice_dataplane::io::mem::{MemPort, MemPortConfig};
use sluice_dataplane::io::Port;
use sluice_dataplane::stages::router;
use std::sync::Arc;
use std::time::Duration;

fn manifests(routes: usize) -> String {
    let mut y = String::from(
        "apiVersion: sluice.dev/v1\nkind: Interface\nmetadata: {name: p0}\nspec: {backend: \"mem:p0\", mac: \"02:00:00:00:00:01\", addresses: [\"10.0.0.1/24\"]}\n---\n\
         apiVersion: sluice.dev/v1\nkind: Interface\nmetadata: {name: p1}\nspec: {backend: \"mem:p1\", mac: \"02:00:00:00:00:02\", addresses: [\"10.0.1.1/24\"]}\n",
    );
    for i in 0..routes {
        y.push_str(&format!(
            "---\napiVersion: sluice.dev/v1\nkind: Route\nmetadata: {{name: r{i}}}\nspec: {{destination: {}.{}.{}.0/24, nextHops: [{{gateway: 10.0.1.{}}}]}}\n",
            20 + i / 65536,
            i / 256 % 256,
            i % 256,
            100 + i % 4
        ));
    }
    y
}

fn apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_one_route_until_workers_run_it");
    group.sample_size(20);
    for routes in [100usize, 10_000] {
        let dir = std::env::temp_dir().join(format!(
            "sluice-apply-bench-{routes}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let ctx = NodeContext {
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
        let controller = Controller::open(&dir, ctx).unwrap();
        let batch: Vec<Change> = parse_manifests(&manifests(routes))
            .unwrap()
            .into_iter()
            .map(Change::Apply)
            .collect();
        controller.apply(batch, false).unwrap();
        let cfg = |id| MemPortConfig {
            port_id: id,
            ..Default::default()
        };
        let ports: Vec<Arc<dyn Port>> =
            vec![MemPort::sink("p0", cfg(0)), MemPort::sink("p1", cfg(1))];
        let engine = Engine::start_with_cell(
            ports,
            controller.tables().clone(),
            &EngineConfig::default(),
            router,
        )
        .unwrap();
        let mut flip = 0usize;
        group.bench_function(format!("{routes}_routes"), |b| {
            b.iter(|| {
                flip += 1;
                let yaml = format!(
                    "apiVersion: sluice.dev/v1\nkind: Route\nmetadata: {{name: r0}}\nspec: {{destination: 20.0.0.0/24, nextHops: [{{gateway: 10.0.1.{}}}]}}\n",
                    100 + flip % 4
                );
                let change: Vec<Change> = parse_manifests(&yaml).unwrap().into_iter().map(Change::Apply).collect();
                let applied = controller.apply(change, false).unwrap();
                assert!(controller.wait_for_workers(applied.generation, Duration::from_secs(5)));
            })
        });
        engine.stop();
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
