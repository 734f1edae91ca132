//! The YAML layer: the span-carrying tree ([`Node`]) every later layer reads, how Psych (GitLab)
//! types its scalars, the parser ([`parse`]: text -> tree, merge keys applied), GitLab's deep
//! merge and the writer back to YAML.
//!
//! saphyr's parser gives the events; `events.rs` builds a raw tree from them that keeps every
//! mapping entry in order (duplicates included) and resolves aliases with an expansion budget.
//! The parser then builds hashes the way GitLab's Psych does: entries in document order, the last
//! of a repeated key wins, each `<<` merged at its place. Scalars are kept as written (`early_parse(false)`) so
//! that `1.10` stays `1.10` and YAML 1.1 words like `yes` can be read the way GitLab reads them.

mod emit;
mod events;
mod merge;
mod node;
mod number;
mod parser;

pub(crate) use emit::to_yaml_annotated;
pub(crate) use merge::deep_merge;
pub(crate) use node::{Entry, Map, Node, Scalar, Value, canonical};
pub(crate) use number::Psych;
pub(crate) use parser::parse;
