//! What a GraphQL document may cost, checked on the parsed document before the engine sees it.
//!
//! async-graphql's own checks (recursion depth, directives, complexity, depth) and several of
//! its validation rules walk the document with every fragment spread inlined, and they run
//! synchronously: fragments that spread the next one twice, thirty levels deep, are a few
//! hundred bytes that expand to 2³⁰ fields and keep a worker thread busy for minutes, with
//! nothing awaited that a timeout or a vanished client could interrupt. So the gateway counts
//! first, once per fragment (memoized, saturating), and refuses before that walk:
//!
//! - more fields, fragments expanded, than the complexity limit allows (every field costs at
//!   least one toward complexity, so such a document would fail there anyway, only later);
//! - nesting deeper than [`MAX_NESTING`] once fragments are expanded;
//! - a fragment that spreads itself, directly or not (the engine's walks would not end);
//! - more root fields in a mutation than `max_mutation_fields`: they run one after another and
//!   some (`login`, `signup`) cost a password hash each.

use std::collections::HashMap;

use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};

/// Deepest nesting of fields and fragments (spreads and inline fragments count a level, as in
/// async-graphql's recursion check): the engine's own limit, also set on the schema.
pub const MAX_NESTING: usize = 32;

/// Whether every operation of `doc` selects introspection fields only (`__schema`, `__type`,
/// `__typename`) at its root: such a document is answered by the introspection schema.
pub fn is_introspection(doc: &ExecutableDocument) -> bool {
    doc.operations.iter().all(|(_, op)| {
        op.node.ty == OperationType::Query
            && op.node.selection_set.node.items.iter().all(|s| match &s.node {
                Selection::Field(f) => f.node.name.node.starts_with("__"),
                Selection::FragmentSpread(_) | Selection::InlineFragment(_) => false,
            })
    })
}

/// The gateway's bounds on one document.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most fields a document may select once its fragments are expanded.
    pub max_fields: usize,
    /// Most root fields one mutation operation may have (fragments expanded).
    pub max_mutation_fields: usize,
}

impl Limits {
    /// `Err` with a message for the client when `doc` exceeds a bound.
    pub fn check(&self, doc: &ExecutableDocument) -> Result<(), String> {
        let mut counter = Counter { doc, memo: HashMap::new() };
        for (_, operation) in doc.operations.iter() {
            let cost = counter.set(&operation.node.selection_set.node, 0)?;
            if cost.fields > self.max_fields {
                return Err(format!(
                    "Query is too complex: it selects more than {} fields once its fragments are expanded.",
                    self.max_fields
                ));
            }
            if operation.node.ty == OperationType::Mutation && cost.root > self.max_mutation_fields {
                return Err(format!(
                    "A request may run at most {} mutation fields (they run one after another); this one has {}. \
                     Send the rest in further requests.",
                    self.max_mutation_fields, cost.root
                ));
            }
        }
        Ok(())
    }
}

/// What a selection set costs with its fragments expanded.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    /// Fields at every level, saturating.
    fields: usize,
    /// Fields at its own level (through fragments and inline fragments), saturating.
    root: usize,
    /// Levels below it.
    height: usize,
}

enum Memo {
    /// Being counted: meeting it again is a cycle.
    Open,
    Done(Cost),
}

struct Counter<'a> {
    doc: &'a ExecutableDocument,
    /// Each fragment is counted once, whatever the number of its spreads.
    memo: HashMap<&'a str, Memo>,
}

impl<'a> Counter<'a> {
    /// The cost of `set`, found at nesting `depth`.
    fn set(&mut self, set: &'a SelectionSet, depth: usize) -> Result<Cost, String> {
        if depth > MAX_NESTING {
            return Err(too_deep());
        }
        let mut cost = Cost::default();
        for selection in &set.items {
            let (inner, is_field) = match &selection.node {
                Selection::Field(field) if field.node.selection_set.node.items.is_empty() => (None, true),
                Selection::Field(field) => (Some(self.set(&field.node.selection_set.node, depth + 1)?), true),
                Selection::InlineFragment(inline) => {
                    (Some(self.set(&inline.node.selection_set.node, depth + 1)?), false)
                }
                Selection::FragmentSpread(spread) => {
                    (Some(self.fragment(spread.node.fragment_name.node.as_str(), depth + 1)?), false)
                }
            };
            let inner_fields = inner.map_or(0, |c| c.fields);
            if is_field {
                cost.fields = cost.fields.saturating_add(1).saturating_add(inner_fields);
                cost.root = cost.root.saturating_add(1);
            } else {
                cost.fields = cost.fields.saturating_add(inner_fields);
                cost.root = cost.root.saturating_add(inner.map_or(0, |c| c.root));
            }
            cost.height = cost.height.max(inner.map_or(0, |c| c.height + 1));
        }
        Ok(cost)
    }

    /// The cost of fragment `name`, spread at nesting `depth`.
    fn fragment(&mut self, name: &'a str, depth: usize) -> Result<Cost, String> {
        match self.memo.get(name) {
            Some(Memo::Done(cost)) if depth + cost.height > MAX_NESTING => return Err(too_deep()),
            Some(Memo::Done(cost)) => return Ok(*cost),
            Some(Memo::Open) => return Err(format!("Fragment `{}` spreads itself.", platform::error::shown(name))),
            None => {}
        }
        // An unknown fragment costs nothing here; the engine's validation names it.
        let Some(fragment) = self.doc.fragments.get(name) else { return Ok(Cost::default()) };
        self.memo.insert(name, Memo::Open);
        let cost = self.set(&fragment.node.selection_set.node, depth)?;
        self.memo.insert(name, Memo::Done(cost));
        Ok(cost)
    }
}

fn too_deep() -> String {
    format!("Query is nested too deep: more than {MAX_NESTING} levels once its fragments are expanded.")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_fields: 100, max_mutation_fields: 3 };

    fn check(query: &str) -> Result<(), String> {
        LIMITS.check(&async_graphql::parser::parse_query(query).unwrap())
    }

    /// `levels` fragments, each spreading the next `fan_out` times: fan_out^levels fields in a
    /// few hundred bytes.
    fn fragment_bomb(levels: usize, fan_out: usize) -> String {
        let mut q = String::from("query { ...F0 }\n");
        for i in 0..levels {
            q.push_str(&format!("fragment F{i} on Query {{ {} }}\n", format!("...F{} ", i + 1).repeat(fan_out)));
        }
        q.push_str(&format!("fragment F{levels} on Query {{ __typename }}\n"));
        q
    }

    #[test]
    fn ordinary_documents_pass() {
        check("{ regions { name shards } }").unwrap();
        check("query { ...R } fragment R on Query { regions { name } a: regions { ...N } } fragment N on RegionInfo { name }")
            .unwrap();
        check("mutation { a: login(input: {email: \"a@b.org\", password: \"x\"}) { accessToken } }").unwrap();
    }

    #[test]
    fn exponential_fragments_are_counted_without_expanding_them() {
        check(&fragment_bomb(6, 2)).unwrap(); // 64 fields
        let err = check(&fragment_bomb(7, 2)).unwrap_err(); // 128
        assert!(err.contains("more than 100 fields"), "{err}");
        // 8^30 = 2^90 fields: counted in a few hundred steps, the count saturating, not wrapping.
        let err = check(&fragment_bomb(30, 8)).unwrap_err();
        assert!(err.contains("too complex"), "{err}");
        let wide = (0..70).map(|i| format!("...F{i} ")).collect::<String>();
        let defs =
            (0..70).map(|i| format!("fragment F{i} on Query {{ {} }}\n", "...G ".repeat(70))).collect::<String>();
        let err = check(&format!("{{ {wide} }} {defs} fragment G on Query {{ __typename }}")).unwrap_err();
        assert!(err.contains("too complex"), "{err}");
    }

    #[test]
    fn cycles_and_deep_chains_are_refused() {
        let err = check("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }").unwrap_err();
        assert!(err.contains("spreads itself"), "{err}");
        let err = check("{ ...A } fragment A on Query { ...A }").unwrap_err();
        assert!(err.contains("spreads itself"), "{err}");
        let chain = |n: usize| {
            let mut q = String::from("{ ...F0 }\n");
            for i in 0..n {
                q.push_str(&format!("fragment F{i} on Query {{ ...F{} }}\n", i + 1));
            }
            q + &format!("fragment F{n} on Query {{ __typename }}")
        };
        check(&chain(MAX_NESTING - 1)).unwrap();
        let err = check(&chain(5000)).unwrap_err();
        assert!(err.contains("nested too deep"), "{err}");
    }

    #[test]
    fn mutation_root_fields_are_counted_through_fragments() {
        let login =
            |i: usize| format!("l{i}: login(input: {{email: \"u{i}@b.org\", password: \"x\"}}) {{ accessToken }}");
        let three = (0..3).map(login).collect::<String>();
        check(&format!("mutation {{ {three} }}")).unwrap();
        let err = check(&format!("mutation {{ {three} {} }}", login(3))).unwrap_err();
        assert!(err.contains("at most 3 mutation fields") && err.contains("has 4"), "{err}");
        let err = check(&format!(
            "mutation {{ ...M ... on Mutation {{ {} }} }} fragment M on Mutation {{ {three} }}",
            login(3)
        ))
        .unwrap_err();
        assert!(err.contains("has 4"), "{err}");
        // Queries are bounded by their fields, not by this.
        check("{ a: regions { name } b: regions { name } c: regions { name } d: regions { name } }").unwrap();
    }
}
