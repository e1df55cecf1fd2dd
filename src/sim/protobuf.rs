//! Request bodies in the Kubernetes protobuf encoding (`application/vnd.kubernetes.protobuf`), which typed clients
//! send whatever the server prefers: `kubectl create namespace`, `kubectl create configmap`, `… secret`,
//! `… serviceaccount`. The envelope is the magic `k8s\0` and a `runtime.Unknown` (type meta, raw object); the
//! object is decoded with the field numbers of `k8s.io/api`'s `generated.proto` into the JSON the server stores.
//!
//! Approximation: only Namespaces, ConfigMaps, Secrets and ServiceAccounts are understood (managed fields are
//! skipped); a protobuf body of any other kind is answered 415 Unsupported Media Type. Answers are always JSON,
//! which every client that offers protobuf also accepts.

use data_encoding::BASE64;
use serde_json::{Map, Value, json};

/// The prefix of every protobuf-encoded object.
const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    #[error("the body is not a Kubernetes protobuf object")]
    Malformed,
    #[error("protobuf bodies of {0} are not understood")]
    UnknownKind(String),
}

#[derive(Clone, Copy)]
enum Kind {
    String,
    Int,
    Bool,
    Time,
    /// `map<string, string>`.
    StringMap,
    /// `map<string, bytes>`: base64 in JSON.
    BytesMap,
    Message(&'static [Field]),
}

#[derive(Clone, Copy)]
struct Field {
    number: u64,
    name: &'static str,
    kind: Kind,
    repeated: bool,
}

const fn field(number: u64, name: &'static str, kind: Kind) -> Field {
    Field { number, name, kind, repeated: false }
}

const fn repeated(number: u64, name: &'static str, kind: Kind) -> Field {
    Field { number, name, kind, repeated: true }
}

const OWNER_REFERENCE: &[Field] = &[
    field(1, "kind", Kind::String),
    field(3, "name", Kind::String),
    field(4, "uid", Kind::String),
    field(5, "apiVersion", Kind::String),
    field(6, "controller", Kind::Bool),
    field(7, "blockOwnerDeletion", Kind::Bool),
];

const OBJECT_META: &[Field] = &[
    field(1, "name", Kind::String),
    field(2, "generateName", Kind::String),
    field(3, "namespace", Kind::String),
    field(5, "uid", Kind::String),
    field(6, "resourceVersion", Kind::String),
    field(7, "generation", Kind::Int),
    field(8, "creationTimestamp", Kind::Time),
    field(9, "deletionTimestamp", Kind::Time),
    field(10, "deletionGracePeriodSeconds", Kind::Int),
    field(11, "labels", Kind::StringMap),
    field(12, "annotations", Kind::StringMap),
    repeated(13, "ownerReferences", Kind::Message(OWNER_REFERENCE)),
    repeated(14, "finalizers", Kind::String),
];

const OBJECT_REFERENCE: &[Field] = &[
    field(1, "kind", Kind::String),
    field(2, "namespace", Kind::String),
    field(3, "name", Kind::String),
    field(4, "uid", Kind::String),
    field(5, "apiVersion", Kind::String),
    field(6, "resourceVersion", Kind::String),
    field(7, "fieldPath", Kind::String),
];

const NAMESPACE: &[Field] = &[
    field(1, "metadata", Kind::Message(OBJECT_META)),
    field(2, "spec", Kind::Message(&[repeated(1, "finalizers", Kind::String)])),
    field(3, "status", Kind::Message(&[field(1, "phase", Kind::String)])),
];

const CONFIG_MAP: &[Field] = &[
    field(1, "metadata", Kind::Message(OBJECT_META)),
    field(2, "data", Kind::StringMap),
    field(3, "binaryData", Kind::BytesMap),
    field(4, "immutable", Kind::Bool),
];

const SECRET: &[Field] = &[
    field(1, "metadata", Kind::Message(OBJECT_META)),
    field(2, "data", Kind::BytesMap),
    field(3, "type", Kind::String),
    field(4, "stringData", Kind::StringMap),
    field(5, "immutable", Kind::Bool),
];

const SERVICE_ACCOUNT: &[Field] = &[
    field(1, "metadata", Kind::Message(OBJECT_META)),
    repeated(2, "secrets", Kind::Message(OBJECT_REFERENCE)),
    repeated(3, "imagePullSecrets", Kind::Message(&[field(1, "name", Kind::String)])),
    field(4, "automountServiceAccountToken", Kind::Bool),
];

fn message_of(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    match (api_version, kind) {
        ("v1", "Namespace") => Some(NAMESPACE),
        ("v1", "ConfigMap") => Some(CONFIG_MAP),
        ("v1", "Secret") => Some(SECRET),
        ("v1", "ServiceAccount") => Some(SERVICE_ACCOUNT),
        _ => None,
    }
}

/// The JSON object a protobuf request body stands for.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body.strip_prefix(MAGIC).ok_or(ProtobufError::Malformed)?;
    let mut type_meta = Vec::new();
    let mut raw: &[u8] = &[];
    for entry in Reader(envelope) {
        match entry? {
            (1, Wire::Bytes(bytes)) => type_meta = Reader(bytes).collect::<Result<Vec<_>, _>>()?,
            (2, Wire::Bytes(bytes)) => raw = bytes,
            _ => {}
        }
    }
    let text_of = |number: u64| {
        type_meta.iter().find_map(|(n, wire)| match wire {
            Wire::Bytes(bytes) if *n == number => std::str::from_utf8(bytes).ok(),
            _ => None,
        })
    };
    let (api_version, kind) = (text_of(1).unwrap_or_default(), text_of(2).unwrap_or_default());
    let fields =
        message_of(api_version, kind).ok_or_else(|| ProtobufError::UnknownKind(format!("{api_version}/{kind}")))?;
    let mut object = message(raw, fields)?;
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    Ok(object)
}

/// A field's payload by wire type.
#[derive(Clone, Copy, Debug)]
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of one message, in order.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.0.split_first().ok_or(ProtobufError::Malformed)?;
            self.0 = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtobufError::Malformed)
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], ProtobufError> {
        if self.0.len() < length {
            return Err(ProtobufError::Malformed);
        }
        let (taken, rest) = self.0.split_at(length);
        self.0 = rest;
        Ok(taken)
    }

    fn entry(&mut self) -> Result<(u64, Wire<'a>), ProtobufError> {
        let tag = self.varint()?;
        let wire = match tag & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed
            }
            2 => {
                let length = usize::try_from(self.varint()?).map_err(|_| ProtobufError::Malformed)?;
                Wire::Bytes(self.take(length)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed
            }
            _ => return Err(ProtobufError::Malformed),
        };
        Ok((tag >> 3, wire))
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<(u64, Wire<'a>), ProtobufError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let entry = self.entry();
        if entry.is_err() {
            self.0 = &[];
        }
        Some(entry)
    }
}

fn text(bytes: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtobufError::Malformed)
}

/// A message as JSON; zero values of scalar fields are left out, as the JSON encoding's `omitempty` leaves them.
fn message(bytes: &[u8], fields: &[Field]) -> Result<Value, ProtobufError> {
    let mut object = Map::new();
    for entry in Reader(bytes) {
        let (number, wire) = entry?;
        let Some(field) = fields.iter().find(|f| f.number == number) else { continue };
        let value = match (field.kind, wire) {
            (Kind::String, Wire::Bytes(b)) => Some(json!(text(b)?)).filter(|v| v != "" || field.repeated),
            (Kind::Int, Wire::Varint(n)) => Some(json!(n as i64)).filter(|_| n != 0),
            (Kind::Bool, Wire::Varint(n)) => Some(json!(n != 0)),
            (Kind::Time, Wire::Bytes(b)) => time(b)?,
            (Kind::Message(inner), Wire::Bytes(b)) => Some(message(b, inner)?),
            (Kind::StringMap | Kind::BytesMap, Wire::Bytes(b)) => {
                let (key, value) = map_entry(b, matches!(field.kind, Kind::BytesMap))?;
                let map = object.entry(field.name).or_insert_with(|| json!({}));
                map[key] = value;
                continue;
            }
            _ => return Err(ProtobufError::Malformed),
        };
        match (value, field.repeated) {
            (Some(value), true) => match object.entry(field.name).or_insert_with(|| json!([])) {
                Value::Array(items) => items.push(value),
                _ => return Err(ProtobufError::Malformed),
            },
            (Some(value), false) => {
                object.insert(field.name.to_string(), value);
            }
            (None, _) => {}
        }
    }
    Ok(Value::Object(object))
}

fn map_entry(bytes: &[u8], binary: bool) -> Result<(String, Value), ProtobufError> {
    let (mut key, mut value) = (String::new(), json!(""));
    for entry in Reader(bytes) {
        match entry? {
            (1, Wire::Bytes(b)) => key = text(b)?,
            (2, Wire::Bytes(b)) if binary => value = json!(BASE64.encode(b)),
            (2, Wire::Bytes(b)) => value = json!(text(b)?),
            _ => {}
        }
    }
    Ok((key, value))
}

/// `metav1.Time` (seconds and nanoseconds since the epoch); the zero time is no time.
fn time(bytes: &[u8]) -> Result<Option<Value>, ProtobufError> {
    let mut seconds = 0i64;
    for entry in Reader(bytes) {
        if let (1, Wire::Varint(n)) = entry? {
            seconds = n as i64;
        }
    }
    if seconds == 0 {
        return Ok(None);
    }
    let time = jiff::Timestamp::from_second(seconds).map_err(|_| ProtobufError::Malformed)?;
    Ok(Some(json!(super::clock::format_time(time))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Protobuf encoding, enough to build the bodies kubectl sends.
    fn tag(number: u64, wire: u64) -> Vec<u8> {
        varint((number << 3) | wire)
    }

    fn varint(mut n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn bytes(number: u64, payload: &[u8]) -> Vec<u8> {
        [tag(number, 2), varint(payload.len() as u64), payload.to_vec()].concat()
    }

    fn entry(number: u64, key: &str, value: &[u8]) -> Vec<u8> {
        bytes(number, &[bytes(1, key.as_bytes()), bytes(2, value)].concat())
    }

    fn envelope(kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [bytes(1, b"v1"), bytes(2, kind.as_bytes())].concat();
        [MAGIC.to_vec(), bytes(1, &type_meta), bytes(2, raw)].concat()
    }

    /// ObjectMeta as gogo-protobuf writes it: every string, even empty ones, and an empty creationTimestamp.
    fn object_meta(name: &str) -> Vec<u8> {
        [
            bytes(1, name.as_bytes()),
            bytes(2, b""),
            bytes(3, b""),
            bytes(6, b""),
            [tag(7, 0), varint(0)].concat(),
            bytes(8, b""),
            entry(11, "team", b"ray"),
            bytes(14, b"example.com/hold"),
        ]
        .concat()
    }

    #[test]
    fn a_namespace_as_kubectl_create_namespace_sends_it() {
        let raw = [bytes(1, &object_meta("team")), bytes(2, b""), bytes(3, b"")].concat();
        assert_eq!(
            decode(&envelope("Namespace", &raw)).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "team", "labels": {"team": "ray"}, "finalizers": ["example.com/hold"]},
                "spec": {}, "status": {},
            })
        );
    }

    #[test]
    fn config_maps_and_secrets_keep_text_and_base64_data() {
        let raw = [bytes(1, &object_meta("c")), entry(2, "a", b"b"), entry(3, "bin", &[0, 1, 2])].concat();
        let config_map = decode(&envelope("ConfigMap", &raw)).unwrap();
        assert_eq!(
            (config_map["data"].clone(), config_map["binaryData"].clone()),
            (json!({"a": "b"}), json!({"bin": "AAEC"}))
        );
        let raw = [bytes(1, &object_meta("s")), entry(2, "k", b"v"), bytes(3, b"Opaque")].concat();
        let secret = decode(&envelope("Secret", &raw)).unwrap();
        assert_eq!((secret["data"].clone(), secret["type"].clone()), (json!({"k": "dg=="}), json!("Opaque")));
    }

    #[test]
    fn times_are_rfc_3339() {
        let meta = [bytes(1, b"n"), bytes(9, &[tag(1, 0), varint(1_735_689_600)].concat())].concat();
        let namespace = decode(&envelope("Namespace", &bytes(1, &meta))).unwrap();
        assert_eq!(namespace["metadata"]["deletionTimestamp"], "2025-01-01T00:00:00Z");
    }

    #[test]
    fn other_kinds_and_other_bodies_are_refused() {
        assert_eq!(decode(&envelope("Pod", &[])), Err(ProtobufError::UnknownKind("v1/Pod".to_string())));
        assert_eq!(decode(b"{}"), Err(ProtobufError::Malformed));
        assert_eq!(decode(&[MAGIC.to_vec(), vec![0x0a, 0x05]].concat()), Err(ProtobufError::Malformed));
    }
}
