//! The plugins a plan may use, looked up by their `uses:` name: a value the caller builds and
//! passes to [`crate::plan::Plan::from_source`], so tests can register plugins of their own.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Stage;

/// Plugins by kind.
#[derive(Clone, Default)]
pub struct Registry {
    stages: BTreeMap<&'static str, Arc<dyn Stage>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// A registry holding the engine's own plugin, `cmd`.
    pub fn with_cmd() -> Self {
        let mut registry = Registry::new();
        registry.register(crate::cmd::Cmd);
        registry
    }

    /// Adds a plugin; one registered later under the same kind replaces it.
    pub fn register(&mut self, stage: impl Stage + 'static) -> &mut Self {
        self.stages.insert(stage.kind(), Arc::new(stage));
        self
    }

    pub fn get(&self, kind: &str) -> Option<Arc<dyn Stage>> {
        self.stages.get(kind).cloned()
    }

    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.stages.keys().copied()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn Stage>> {
        self.stages.values()
    }
}
