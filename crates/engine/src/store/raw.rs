//! JSON kept as text: parts of the index and of run records that most readers skip, so reading
//! them costs a copy rather than a parse into maps and values.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A JSON value as its text; compared by text. In JSON it is written as the value itself; in a
/// binary format (the index) as a string holding the text.
#[derive(Debug, Clone)]
pub struct RawJson(Box<RawValue>);

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            self.0.serialize(serializer)
        } else {
            serializer.serialize_str(self.0.get())
        }
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawJson, D::Error> {
        if deserializer.is_human_readable() {
            Box::<RawValue>::deserialize(deserializer).map(RawJson)
        } else {
            let text = String::deserialize(deserializer)?;
            RawValue::from_string(text)
                .map(RawJson)
                .map_err(serde::de::Error::custom)
        }
    }
}

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
