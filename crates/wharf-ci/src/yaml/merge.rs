//! GitLab's deep merge, used by `include` and `extends`.

use super::node::{Entry, Map, Node, Value};

/// GitLab's `extends` merge: maps merge recursively with `over` winning; anything else
/// (including lists) is replaced by `over`'s value.
pub(crate) fn deep_merge(base: &Map, over: &Map) -> Map {
    let mut out = base.clone();
    for (k, e) in over {
        let merged = match (out.get(k).map(|b| &b.value.value), &e.value.value) {
            (Some(Value::Map(bm)), Value::Map(om)) => Entry {
                key_span: e.key_span.clone(),
                value: Node {
                    span: e.value.span.clone(),
                    value: Value::Map(deep_merge(bm, om)),
                },
            },
            _ => e.clone(),
        };
        out.insert(k.clone(), merged);
    }
    out
}
