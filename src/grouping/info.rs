//! Grouping info: the variants, hashes and component tree of one grouping, in Sentry's grouping-info shape.

use super::tree::Tree;
use super::{Outcome, Scheme};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// Why an event grouped as it did. Serializes as Sentry's grouping-info object: one entry per
/// variant key.
#[derive(Debug, Clone)]
pub struct Info {
    /// In priority order; contributing ones carry the hashes `hashes()` returns, in that order.
    pub variants: Vec<Variant>,
}

impl Serialize for Info {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.variants.len()))?;
        for v in &self.variants {
            map.serialize_entry(v.key, v)?;
        }
        map.end()
    }
}

impl Info {
    /// The hashes of the contributing variants, in priority order (equal to `hashes()`).
    pub fn hashes(&self) -> Vec<String> {
        self.variants
            .iter()
            .filter(|v| v.contributes)
            .filter_map(|v| v.hash.clone())
            .collect()
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct SchemeRef {
    pub id: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Variant {
    pub key: &'static str,
    /// `component`, `salted_component`, `custom_fingerprint`, `checksum` or `fallback`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub description: String,
    pub contributes: bool,
    pub hint: Option<String>,
    /// `None` when the variant does not contribute.
    pub hash: Option<String>,
    pub config: SchemeRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<Component>,
    /// The resolved fingerprint (custom and salted variants) or the checksum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    /// The fingerprint the event used, as written (`{{ default }}` when it had none).
    pub fingerprint: Vec<String>,
    /// The project's fingerprinting rule that replaced the event's fingerprint.
    pub matched_rule: Option<String>,
    /// That rule's `title` attribute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// One node of the component tree.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    pub id: &'static str,
    pub name: &'static str,
    pub contributes: bool,
    pub hint: Option<String>,
    pub values: Vec<ComponentValue>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ComponentValue {
    Value(String),
    Component(Component),
}

pub(super) fn render(outcome: Outcome<'_>, scheme: Scheme) -> Info {
    let config = SchemeRef { id: scheme.id() };
    let strategy = match outcome.strategy {
        "exception" => "exception",
        "threads" => "thread stack-trace",
        "stacktrace" => "stack-trace",
        other => other,
    };
    let variants = outcome
        .variants
        .into_iter()
        .map(|v| {
            let component = match (&outcome.tree, v.tree_variant) {
                (Some(tree), Some(var)) => Some(root_component(tree, var)),
                _ => None,
            };
            let description = match v.key {
                "app" => format!("in-app {strategy}"),
                "system" => format!("system {strategy}"),
                "default" => strategy.to_owned(),
                "custom_fingerprint" => "custom fingerprint".to_owned(),
                "checksum" => "legacy checksum".to_owned(),
                _ => "fallback (nothing to group by)".to_owned(),
            };
            let description = match v.kind {
                "salted_component" => format!("{description} and custom fingerprint"),
                _ => description,
            };
            Variant {
                key: v.key,
                kind: v.kind,
                description,
                contributes: v.hash.is_some(),
                hint: v.hint.map(|h| h.into_owned()),
                hash: v.hash,
                config,
                component,
                values: v.values,
                fingerprint: outcome.fingerprint.clone(),
                matched_rule: outcome.matched_rule.clone(),
                title: outcome.rule_title.clone(),
            }
        })
        .collect();
    Info { variants }
}

/// The variant's tree; a chain of one exception is shown as that exception, as Sentry does.
fn root_component(tree: &Tree<'_>, v: usize) -> Component {
    let root = &tree.nodes[0];
    let children: Vec<usize> = tree.children(0).collect();
    if root.id == "chained-exception" && children.len() == 1 {
        let mut c = component(tree, children[0], v);
        if !root.on[v] {
            c.contributes = false;
            c.hint = tree.hint(0, v).map(str::to_owned).or(c.hint);
        }
        return c;
    }
    component(tree, 0, v)
}

fn component(tree: &Tree<'_>, i: usize, v: usize) -> Component {
    let node = &tree.nodes[i];
    let values = if node.leaf {
        vec![ComponentValue::Value(node.value.to_string())]
    } else {
        tree.children(i)
            .map(|c| ComponentValue::Component(component(tree, c, v)))
            .collect()
    };
    Component {
        id: node.id,
        name: match node.id {
            "stacktrace" => "stack-trace",
            "chained-exception" => "chained exception",
            other => other,
        },
        contributes: node.on[v],
        hint: tree.hint(i, v).map(str::to_owned),
        values,
    }
}
