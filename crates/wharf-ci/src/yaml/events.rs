//! YAML events -> a raw tree that keeps every mapping entry in document order, duplicates
//! included.
//!
//! saphyr's own loader stores a mapping in a hash map: a repeated key (or a second `<<`) replaces
//! the first one's value in place and loses its position, or is refused. GitLab's Psych builds
//! its hashes entry by entry, so the parser needs every entry, in order, to do the same. Anchors
//! and aliases are resolved here, with a budget against alias bombs.

use saphyr_parser::{Event, Marker, ScalarStyle, Span, SpannedEventReceiver, Tag};
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub(crate) struct Raw {
    pub span: Span,
    pub data: RawData,
}

#[derive(Debug, Clone)]
pub(crate) enum RawData {
    Scalar {
        text: String,
        style: ScalarStyle,
        tag: Option<Tag>,
    },
    /// A sequence, with its tag when it has one outside YAML's core schema.
    Seq(Vec<Raw>, Option<Tag>),
    /// Every key and value in document order.
    Map(Vec<(Raw, Raw)>, Option<Tag>),
    /// An empty document.
    Empty,
}

impl Raw {
    /// Nodes in this tree, counted until `budget` runs out (`None` then).
    fn count_within(&self, budget: usize) -> Option<usize> {
        let mut count = 1usize;
        let children: Box<dyn Iterator<Item = &Raw>> = match &self.data {
            RawData::Seq(items, _) => Box::new(items.iter()),
            RawData::Map(pairs, _) => Box::new(pairs.iter().flat_map(|(k, v)| [k, v])),
            RawData::Scalar { .. } | RawData::Empty => Box::new(std::iter::empty()),
        };
        for child in children {
            count += child.count_within(budget.checked_sub(count)?)?;
        }
        (count <= budget).then_some(count)
    }
}

/// Builds [`Raw`] documents from parser events.
pub(crate) struct TreeLoader {
    pub docs: Vec<Raw>,
    /// Documents finished before the current one started.
    docs_before: usize,
    /// Open collections: the node, its anchor id and its start.
    stack: Vec<(Raw, usize)>,
    /// A mapping's key waiting for its value, one slot per open collection.
    pending_keys: Vec<Option<Raw>>,
    anchors: HashMap<usize, Raw>,
    /// Nodes aliases may still produce.
    alias_budget: usize,
    pub error: Option<(Marker, String)>,
}

impl TreeLoader {
    pub fn new(alias_budget: usize) -> Self {
        Self {
            docs: Vec::new(),
            docs_before: 0,
            stack: Vec::new(),
            pending_keys: Vec::new(),
            anchors: HashMap::new(),
            alias_budget,
            error: None,
        }
    }

    fn insert(&mut self, node: Raw, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let Some((parent, _)) = self.stack.last_mut() else {
            self.docs.push(node);
            return;
        };
        match &mut parent.data {
            RawData::Seq(items, _) => items.push(node),
            RawData::Map(pairs, _) => {
                let slot = self
                    .pending_keys
                    .last_mut()
                    .expect("a mapping has a key slot");
                match slot.take() {
                    None => *slot = Some(node),
                    Some(key) => pairs.push((key, node)),
                }
            }
            RawData::Scalar { .. } | RawData::Empty => unreachable!("only collections are open"),
        }
    }

    fn alias(&mut self, id: usize, span: Span) -> Option<Raw> {
        let Some(anchored) = self.anchors.get(&id) else {
            self.error
                .get_or_insert((span.start, "unknown alias".to_string()));
            return None;
        };
        let Some(count) = anchored.count_within(self.alias_budget) else {
            self.error.get_or_insert((
                span.start,
                "alias expansion exceeded the maximum node budget (possible billion-laughs attack)"
                    .to_string(),
            ));
            return None;
        };
        self.alias_budget -= count;
        let mut node = anchored.clone();
        node.span = span;
        Some(node)
    }
}

/// A tag worth keeping on a collection: core-schema tags (`!!map`, `!!seq`) change nothing.
fn own_tag(tag: Option<std::borrow::Cow<'_, Tag>>) -> Option<Tag> {
    tag.map(std::borrow::Cow::into_owned)
        .filter(|t| !t.is_yaml_core_schema())
}

impl<'input> SpannedEventReceiver<'input> for TreeLoader {
    fn on_event(&mut self, ev: Event<'input>, span: Span) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::Nothing | Event::StreamStart | Event::StreamEnd => {}
            Event::DocumentStart(_) => self.docs_before = self.docs.len(),
            Event::DocumentEnd => {
                if self.docs.len() == self.docs_before {
                    self.docs.push(Raw {
                        span,
                        data: RawData::Empty,
                    });
                }
            }
            Event::SequenceStart(anchor, tag) => {
                let node = Raw {
                    span,
                    data: RawData::Seq(Vec::new(), own_tag(tag)),
                };
                self.stack.push((node, anchor));
                self.pending_keys.push(None);
            }
            Event::MappingStart(anchor, tag) => {
                let node = Raw {
                    span,
                    data: RawData::Map(Vec::new(), own_tag(tag)),
                };
                self.stack.push((node, anchor));
                self.pending_keys.push(None);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (mut node, anchor) = self.stack.pop().expect("an open collection");
                self.pending_keys.pop();
                node.span = Span::new(node.span.start, span.start);
                self.insert(node, anchor);
            }
            Event::Scalar(text, style, anchor, tag) => {
                let node = Raw {
                    span,
                    data: RawData::Scalar {
                        text: text.into_owned(),
                        style,
                        tag: tag.map(std::borrow::Cow::into_owned),
                    },
                };
                self.insert(node, anchor);
            }
            Event::Alias(id) => {
                if let Some(node) = self.alias(id, span) {
                    self.insert(node, 0);
                }
            }
        }
    }
}
