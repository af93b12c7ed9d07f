//! A cluster of in-memory fake nodes for unit tests of the data path: configs made from a few
//! settings and node ids, each node a [`FakeBackend`] kept by id across reconfigurations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::files::Files;
use super::{Cluster, Snapshot};
use crate::backend::fake::FakeBackend;
use crate::backend::Backend;
use crate::config::Config;
use crate::lock;
use crate::metrics::Metrics;

pub(crate) struct TestCluster {
    pub cluster: Arc<Cluster>,
    fakes: Arc<Mutex<Fakes>>,
}

/// Each node's fake, and how many clients were opened for it.
#[derive(Default)]
struct Fakes {
    nodes: HashMap<String, Arc<FakeBackend>>,
    connects: HashMap<String, usize>,
}

/// A config of `settings` (YAML lines) over nodes `ids`; reads are not hedged unless the
/// settings say so.
pub(crate) fn config(settings: &str, ids: &[&str]) -> Config {
    let hedging = if settings.contains("hedge_budget_percent") {
        ""
    } else {
        "hedge_budget_percent: 0\n"
    };
    let mut yaml = format!("{hedging}{settings}\nnodes:\n");
    for id in ids {
        yaml.push_str(&format!(
            "  - {{ id: {id}, url: \"http://{id}.fake:1\" }}\n"
        ));
    }
    Config::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

impl TestCluster {
    pub(crate) fn new(settings: &str, ids: &[&str]) -> TestCluster {
        let fakes: Arc<Mutex<Fakes>> = Arc::default();
        let metrics = Metrics::default();
        let snapshot = Snapshot::build(
            config(settings, ids),
            &Files::default(),
            1,
            None,
            &metrics,
            &connect_fake(&fakes),
        );
        TestCluster {
            cluster: Cluster::new(snapshot, &Files::default(), metrics),
            fakes,
        }
    }

    /// The fake behind node `id`.
    pub(crate) fn node(&self, id: &str) -> Arc<FakeBackend> {
        lock(&self.fakes)
            .nodes
            .get(id)
            .unwrap_or_else(|| panic!("no node {id}"))
            .clone()
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.cluster.snapshot()
    }

    /// How many clients were opened for node `id`.
    pub(crate) fn connects(&self, id: &str) -> usize {
        lock(&self.fakes).connects.get(id).copied().unwrap_or(0)
    }

    /// Applies a new config, as a reload would; nodes keep their fakes by id.
    pub(crate) fn apply(&self, settings: &str, ids: &[&str]) -> Arc<Snapshot> {
        let old = self.cluster.snapshot();
        let new = Arc::new(Snapshot::build(
            config(settings, ids),
            &Files::default(),
            old.generation + 1,
            Some(&old),
            &self.cluster.metrics,
            &connect_fake(&self.fakes),
        ));
        self.cluster.store(new.clone(), &Files::default());
        new
    }
}

fn connect_fake(
    fakes: &Arc<Mutex<Fakes>>,
) -> impl Fn(&crate::config::NodeSpec, &Config, &Files) -> Arc<dyn Backend> {
    let fakes = fakes.clone();
    move |spec, _, _| {
        let mut fakes = lock(&fakes);
        *fakes.connects.entry(spec.id.to_string()).or_default() += 1;
        let fake = fakes.nodes.entry(spec.id.to_string()).or_default().clone();
        fake as Arc<dyn Backend>
    }
}
