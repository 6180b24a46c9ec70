//! The grouping component tree: one arena shared by the `app` and `system` variants, hashed and explained alike.

// Why one tree for both variants: frames are analysed once and each node records, per variant,
// whether it is switched off; a variant's hash is then a walk over the nodes it keeps. The same
// walk feeds `hashes()` and `info()`, so the explanation can never disagree with the hashes.
//
// Nodes are stored in preorder; `end` is one past a node's last descendant, so a subtree is a
// contiguous range and the whole tree costs one allocation. Hints (why something does not
// contribute) are only kept when the tree is built for an explanation.

use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Index of the `app` variant in per-variant arrays.
pub(super) const APP: usize = 0;
/// Index of the `system` variant in per-variant arrays.
pub(super) const SYSTEM: usize = 1;

/// Why a node does not contribute.
pub(super) type Hint = Cow<'static, str>;

pub(super) struct Node<'e> {
    /// Sentry's component id (`exception`, `frame`, `function`, ...).
    pub id: &'static str,
    /// The hash label fed with `value` when the node contributes; `None` feeds nothing itself.
    pub label: Option<&'static str>,
    pub value: Cow<'e, str>,
    pub leaf: bool,
    pub end: u32,
    /// Switched off explicitly, per variant.
    pub off: [bool; 2],
    /// Contributes, per variant (known once the node is closed).
    pub on: [bool; 2],
}

pub(super) struct Tree<'e> {
    pub nodes: Vec<Node<'e>>,
    /// Build for an explanation: keep hints and the parts that do not contribute.
    pub explain: bool,
    /// `(node, variant, hint)`, only when explaining.
    pub hints: Vec<(u32, u8, Hint)>,
}

impl<'e> Tree<'e> {
    pub fn new(explain: bool, capacity: usize) -> Self {
        Tree {
            nodes: Vec::with_capacity(capacity),
            explain,
            hints: Vec::new(),
        }
    }

    /// Starts an inner node; `close` it after its children.
    pub fn open(
        &mut self,
        id: &'static str,
        label: Option<&'static str>,
        value: &'static str,
    ) -> usize {
        self.nodes.push(Node {
            id,
            label,
            value: Cow::Borrowed(value),
            leaf: false,
            end: 0,
            off: [false; 2],
            on: [false; 2],
        });
        self.nodes.len() - 1
    }

    /// Adds a leaf value; it contributes to both variants until switched off.
    pub fn leaf(&mut self, id: &'static str, label: &'static str, value: Cow<'e, str>) -> usize {
        let i = self.nodes.len();
        self.nodes.push(Node {
            id,
            label: Some(label),
            value,
            leaf: true,
            end: i as u32 + 1,
            off: [false; 2],
            on: [true; 2],
        });
        i
    }

    /// Adds a leaf shown in explanations only, switched off with `hint`.
    pub fn hidden(
        &mut self,
        id: &'static str,
        label: &'static str,
        value: impl FnOnce() -> Option<Cow<'e, str>>,
        hint: &'static str,
    ) {
        if !self.explain {
            return;
        }
        if let Some(v) = value() {
            let i = self.leaf(id, label, v);
            self.off(i, &[APP, SYSTEM], || Cow::Borrowed(hint));
        }
    }

    /// Ends an inner node: it contributes where it is not switched off and a child contributes.
    pub fn close(&mut self, i: usize) {
        let end = self.nodes.len();
        self.nodes[i].end = end as u32;
        let mut on = [false; 2];
        let mut j = i + 1;
        while j < end {
            let child = &self.nodes[j];
            on[0] |= child.on[0];
            on[1] |= child.on[1];
            j = child.end as usize;
        }
        let node = &mut self.nodes[i];
        for v in [APP, SYSTEM] {
            node.on[v] = on[v] && !node.off[v];
        }
    }

    /// Switches node `i` off in `variants`; `hint` says why (kept only when explaining).
    pub fn off(&mut self, i: usize, variants: &[usize], hint: impl FnOnce() -> Hint) {
        for &v in variants {
            self.nodes[i].off[v] = true;
            self.nodes[i].on[v] = false;
        }
        if self.explain {
            let hint = hint();
            for &v in variants {
                self.hints.push((i as u32, v as u8, hint.clone()));
            }
        }
    }

    /// Records a hint on a node that does not contribute for another reason (explanations only).
    pub fn note(&mut self, i: usize, v: usize, hint: &'static str) {
        if self.explain && !self.nodes[i].on[v] && self.hint(i, v).is_none() {
            self.hints.push((i as u32, v as u8, Cow::Borrowed(hint)));
        }
    }

    pub fn hint(&self, i: usize, v: usize) -> Option<&str> {
        self.hints
            .iter()
            .rev()
            .find(|(n, var, _)| *n as usize == i && *var as usize == v)
            .map(|(_, _, h)| h.as_ref())
    }

    /// Direct children of node `i`.
    pub fn children(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let end = self.nodes[i].end as usize;
        let mut j = i + 1;
        std::iter::from_fn(move || {
            (j < end).then(|| {
                let c = j;
                j = self.nodes[c].end as usize;
                c
            })
        })
    }

    /// Feeds the contributing labelled values of subtree `i` in variant `v`, in preorder.
    pub fn feed(&self, i: usize, v: usize, hasher: &mut Hasher) {
        let node = &self.nodes[i];
        if !node.on[v] {
            return;
        }
        if let Some(label) = node.label {
            hasher.item(label, &node.value);
        }
        let mut j = i + 1;
        while j < node.end as usize {
            self.feed(j, v, hasher);
            j = self.nodes[j].end as usize;
        }
    }
}

/// The hash encoding (module doc): SHA-256 over `label 0x00 len(u64 LE) value` items, first 16
/// bytes as hex.
pub(super) struct Hasher(Sha256);

impl Hasher {
    pub fn new() -> Self {
        Hasher(Sha256::new())
    }

    pub fn item(&mut self, label: &str, value: &str) {
        self.0.update(label.as_bytes());
        self.0.update([0u8]);
        self.0.update((value.len() as u64).to_le_bytes());
        self.0.update(value.as_bytes());
    }

    pub fn finish(self) -> String {
        hex::encode(&self.0.finalize()[..16])
    }
}

/// The hash of a single labelled value.
pub(super) fn hash_one(label: &str, value: &str) -> String {
    let mut h = Hasher::new();
    h.item(label, value);
    h.finish()
}
