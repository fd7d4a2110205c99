//! JSON kept as text: parts of the index and of run records that most readers skip, so reading
//! them costs a copy rather than a parse into maps and values.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A JSON value as its text; compared by text.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    pub fn of<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<RawJson> {
        serde_json::value::to_raw_value(value).map(RawJson)
    }

    pub fn text(&self) -> &str {
        self.0.get()
    }

    pub fn parse<T: for<'de> Deserialize<'de>>(&self) -> serde_json::Result<T> {
        serde_json::from_str(self.0.get())
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}
