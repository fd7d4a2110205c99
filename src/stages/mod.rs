//! Built-in stage plugins. Each file is one plugin; `builtins` is the registry's table.

use std::sync::Arc;

use crate::stage::Stage;

pub mod cmd;

/// Every built-in plugin.
pub fn builtins() -> Vec<Arc<dyn Stage>> {
    vec![Arc::new(cmd::Cmd)]
}
