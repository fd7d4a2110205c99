//! The table of built-in plugins, looked up by their `uses:` name.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use super::Stage;

/// Plugins by kind.
pub struct Registry {
    stages: BTreeMap<&'static str, Arc<dyn Stage>>,
}

impl Registry {
    fn with_builtins() -> Self {
        let mut registry = Registry {
            stages: BTreeMap::new(),
        };
        for stage in crate::stages::builtins() {
            registry.stages.insert(stage.kind(), stage);
        }
        registry
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

/// The process-wide registry of built-in plugins.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::with_builtins)
}
