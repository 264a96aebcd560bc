//! Files the code generates and the repository commits (`gateway/schema.graphql`,
//! `openapi/<service>.json`): clients and tools read the committed file, so a test keeps it
//! equal to what the code makes, and an environment variable rewrites it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::TestApp;

/// The variable that rewrites `openapi/<service>.json` ([`assert_openapi_current`]).
pub const UPDATE_OPENAPI: &str = "UPDATE_OPENAPI";

/// `relative` in the workspace (the directory above `testkit/`).
pub fn workspace_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from(relative), |root| root.join(relative))
}

/// Asserts `path` holds exactly `generated`. With `update_var` set in the environment, writes
/// `generated` there first, so the same test that fails names the command that fixes it.
pub fn assert_current(path: &Path, generated: &str, update_var: &str) {
    if std::env::var_os(update_var).is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        std::fs::write(path, generated).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let published = std::fs::read_to_string(path).unwrap_or_default();
    if published != generated {
        let line = first_difference(&published, generated);
        panic!(
            "{} is out of date (first difference at line {line}); run the test again with {update_var}=1",
            path.display()
        );
    }
}

fn first_difference(a: &str, b: &str) -> usize {
    a.lines().zip(b.lines()).position(|(x, y)| x != y).unwrap_or_else(|| a.lines().count().min(b.lines().count())) + 1
}

/// Asserts `openapi/<name>.json` is `generated` (the service's document as JSON), and that the
/// document holds what every one must (see [`check_openapi`]).
pub fn assert_openapi_current(name: &str, generated: &str) {
    check_openapi(&serde_json::from_str(generated).expect("the document is JSON"));
    assert_current(&workspace_file(&format!("openapi/{name}.json")), generated, UPDATE_OPENAPI);
}

/// Rules for every document: OpenAPI 3.1, unique operation ids, every answer documenting the
/// `x-correlation-id` header, and every `$ref` resolving.
pub fn check_openapi(doc: &Value) {
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "not OpenAPI 3.1: {}", doc["openapi"]);
    let mut ids = BTreeSet::new();
    for (path, method, op) in operations(doc) {
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path}: no responses"));
        for (status, response) in responses {
            let response = resolve(doc, response);
            assert!(
                response["headers"]["x-correlation-id"].is_object(),
                "{method} {path} {status}: no x-correlation-id header"
            );
        }
    }
    assert_refs_resolve(doc, doc);
}

/// Every `$ref` inside `node` points at something in `doc`.
fn assert_refs_resolve(doc: &Value, node: &Value) {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                assert!(!lookup(doc, r).is_null(), "dangling $ref {r}");
            }
            map.values().for_each(|v| assert_refs_resolve(doc, v));
        }
        Value::Array(items) => items.iter().for_each(|v| assert_refs_resolve(doc, v)),
        _ => {}
    }
}

fn lookup<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference.strip_prefix('#').unwrap_or(reference);
    doc.pointer(pointer).unwrap_or(&Value::Null)
}

/// `node`, or what it refers to.
fn resolve<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
    node["$ref"].as_str().map_or(node, |r| lookup(doc, r))
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Every operation of `doc`: path, method and the operation object.
fn operations(doc: &Value) -> Vec<(String, &'static str, &Value)> {
    let paths = doc["paths"].as_object().expect("the document has paths");
    paths
        .iter()
        .flat_map(|(path, item)| METHODS.iter().filter_map(move |m| item.get(*m).map(|op| (path.clone(), *m, op))))
        .collect()
}

impl TestApp {
    /// Asserts the running service serves `committed` (its `openapi/<service>.json`) at
    /// `/openapi.json`, and that the document and the router agree: every documented operation
    /// is routed, and answers a request without credentials or a valid body with a status its
    /// operation documents and the `x-correlation-id` header; every other method on a
    /// documented path is a 405.
    pub async fn assert_serves_openapi(&self, committed: &str) {
        let res = self.get("/openapi.json").await;
        assert_eq!(res.status(), 200, "/openapi.json");
        assert_eq!(res.headers()["content-type"], "application/json");
        assert!(res.text().await.expect("the document") == committed, "/openapi.json is not the committed document");

        let doc: Value = serde_json::from_str(committed).expect("the document is JSON");
        let mut documented: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
        for (path, method, op) in operations(&doc) {
            documented.entry(path.clone()).or_default().insert(method);
            let res = self.probe(&path, method).await;
            let status = res.status().as_u16().to_string();
            assert!(res.headers().contains_key("x-correlation-id"), "{method} {path}: no x-correlation-id");
            let body = res.text().await.unwrap_or_default();
            assert!(
                op["responses"].get(&status).is_some(),
                "{method} {path} answered {status}, which its operation does not document: {body}"
            );
        }
        for (path, methods) in documented {
            for method in METHODS.iter().filter(|m| !methods.contains(*m)) {
                let res = self.probe(&path, method).await;
                assert_eq!(res.status(), 405, "{method} {path} is routed but not documented");
            }
        }
    }

    /// `method` on `path` with each `{param}` a fresh UUID, no credentials, and `{}` as the
    /// body of a write.
    async fn probe(&self, path: &str, method: &str) -> reqwest::Response {
        let concrete = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { uuid::Uuid::now_v7().to_string() } else { seg.to_owned() })
            .collect::<Vec<_>>()
            .join("/");
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("an HTTP method");
        let mut req = self.client.request(method.clone(), self.url(&concrete));
        if matches!(method, reqwest::Method::POST | reqwest::Method::PUT | reqwest::Method::PATCH) {
            req = req.json(&serde_json::json!({}));
        }
        req.send().await.unwrap_or_else(|e| panic!("{method} {concrete}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_line_that_differs() {
        assert_eq!(first_difference("a\nb\nc\n", "a\nx\nc\n"), 2);
        assert_eq!(first_difference("a\n", "a\nb\n"), 2);
    }

    #[test]
    fn refuses_dangling_references_and_duplicate_ids() {
        let op = |id: &str| serde_json::json!({"operationId": id, "responses": {}});
        let doc = serde_json::json!({"openapi": "3.1.0", "paths": {"/a": {"get": op("x")}, "/b": {"get": op("x")}}});
        assert!(std::panic::catch_unwind(|| check_openapi(&doc)).is_err());
        let doc = serde_json::json!({"openapi": "3.1.0", "paths": {}, "x": {"$ref": "#/components/schemas/Nope"}});
        assert!(std::panic::catch_unwind(|| check_openapi(&doc)).is_err());
        let doc = serde_json::json!({"openapi": "3.1.0", "paths": {"/a": {"get": op("x")}}});
        check_openapi(&doc);
    }
}
