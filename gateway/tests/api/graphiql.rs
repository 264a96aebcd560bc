//! GraphiQL without internet: the page and everything it loads come from the gateway, the
//! vendored files are the locked npm packages' own, and the page runs a query in headless
//! Chromium (`tools/browser/graphiql.mjs`).
//!
//! `UPDATE_GRAPHIQL=1` copies the vendored files from `tools/browser/node_modules` into
//! `gateway/assets/graphiql/` and writes the screenshot to `docs/graphiql.png`; `./dev graphiql
//! --update` does that with the packages installed first.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::graphiql::{ASSETS, ASSETS_PATH, CONTENT_SECURITY_POLICY, PAGE};
use serde_json::{Value, json};
use testkit::TestApp;
use testkit::published::workspace_file;

const UPDATE: &str = "UPDATE_GRAPHIQL";
/// What the browser test types; `regions` is answered from the shard map alone.
const QUERY: &str = "{ regions { name shards partitions } }";
/// Vendored files the page does not load, checked like the assets: their licenses.
const LICENSES: [(&str, &str, &str); 2] =
    [("LICENSE.graphiql", "graphiql", "LICENSE"), ("LICENSE.react", "react", "LICENSE")];

/// The gateway alone on port 0, accounts, orders and the projector at a closed port: the page,
/// GraphiQL's introspection and `regions` need none of them.
async fn lone_gateway() -> TestApp {
    let closed = "http://127.0.0.1:1".to_owned();
    let settings = gateway::Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        accounts_url: closed.clone(),
        orders_url: closed.clone(),
        projector_url: closed,
        redis_key_prefix: format!("{}:gateway:", testkit::unique_id()),
        ..gateway::Settings::default()
    };
    let shards = shard_router::ShardMap::load(workspace_file("shards.toml")).unwrap();
    test_stack::services::spawn_gateway(settings, shards).await
}

/// The values of every `src="…"` and `href="…"` attribute of `html`.
fn references(html: &str) -> Vec<&str> {
    let mut found = Vec::new();
    for attr in [" src=\"", " href=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(attr) {
            rest = &rest[at + attr.len()..];
            let end = rest.find('"').expect("a closed attribute");
            found.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    found
}

#[tokio::test]
async fn the_page_loads_only_what_the_gateway_serves() {
    let gw = lone_gateway().await;
    let res = gw.get("/graphql").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(res.headers()["content-security-policy"], CONTENT_SECURITY_POLICY);
    let html = res.text().await.unwrap();
    assert_eq!(html.as_bytes(), PAGE.bytes);
    assert!(!html.contains("http://") && !html.contains("https://"), "the page names an absolute URL");

    // Every reference is one of the assets, relative to the page; every asset is referenced.
    let page_url = reqwest::Url::parse(&gw.url("/graphql")).unwrap();
    let mut loaded = BTreeSet::new();
    for reference in references(&html) {
        if reference.starts_with("data:") {
            continue;
        }
        let url = page_url.join(reference).unwrap();
        assert_eq!(url.origin(), page_url.origin(), "{reference} is not on the gateway");
        let name = url.path().strip_prefix(&format!("{ASSETS_PATH}/")).unwrap_or_else(|| panic!("{reference}"));
        assert!(ASSETS.iter().any(|a| a.name == name), "{reference} is not an asset the gateway serves");
        loaded.insert(name.to_owned());
    }
    let all: BTreeSet<_> = ASSETS.iter().map(|a| a.name.to_owned()).collect();
    assert_eq!(loaded, all, "assets the page does not load");

    for asset in ASSETS {
        let path = format!("{ASSETS_PATH}/{}", asset.name);
        let res = gw.get(&path).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["content-type"], asset.content_type, "{path}");
        assert_eq!(res.headers()["cache-control"], "no-cache", "{path}");
        let etag = res.headers()["etag"].clone();
        let body = res.bytes().await.unwrap();
        assert!(body == asset.bytes, "{path}: not the embedded file");
        let text = String::from_utf8_lossy(&body);
        if asset.name.ends_with(".css") {
            // Fonts and images inlined: a stylesheet loads nothing else.
            assert!(!text.contains("@import"), "{path} imports a stylesheet");
            for (at, _) in text.match_indices("url(") {
                let target = text[at + 4..].trim_start_matches(['"', '\'']);
                assert!(target.starts_with("data:"), "{path} loads {}", &target[..target.len().min(60)]);
            }
        }
        if asset.npm.is_none() {
            assert!(!text.contains("http://") && !text.contains("https://"), "{path} names an absolute URL");
        }
        for cdn in ["unpkg.com", "jsdelivr.net", "esm.sh", "cdnjs", "googleapis.com"] {
            assert!(!text.contains(cdn), "{path} names {cdn}");
        }

        let res = gw.client.get(gw.url(&path)).header("if-none-match", etag).send().await.unwrap();
        assert_eq!(res.status(), 304, "{path} with its ETag");
        assert!(res.bytes().await.unwrap().is_empty());
    }

    let res = gw.get(&format!("{ASSETS_PATH}/graphiql.js.map")).await;
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "NOT_FOUND");
}

/// `tools/browser` with its packages installed, or a failure naming what installs them.
fn browser_tools() -> PathBuf {
    let dir = workspace_file("tools/browser");
    assert!(
        dir.join("node_modules/playwright-core/package.json").is_file(),
        "tools/browser/node_modules is missing: `./dev graphiql` (also ./dev test and ./dev infra) installs \
         Chromium and the packages of tools/browser/package-lock.json"
    );
    dir
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Each vendored file is the file of the package version `package-lock.json` pins; with
/// [`UPDATE`] set, copied from `node_modules` first.
#[test]
fn the_vendored_assets_are_the_locked_npm_files() {
    let tools = browser_tools();
    let lock = read_json(&tools.join("package-lock.json"));
    let manifest = read_json(&tools.join("package.json"));
    let assets = workspace_file("gateway/assets/graphiql");
    let vendored = ASSETS.iter().filter_map(|a| a.npm.map(|(package, file)| (a.name, package, file)));
    for (name, package, file) in vendored.chain(LICENSES) {
        let locked = &lock["packages"][format!("node_modules/{package}")]["version"];
        assert_eq!(&manifest["dependencies"][package], locked, "{package}: package.json pins another version");
        let installed = read_json(&tools.join(format!("node_modules/{package}/package.json")));
        assert_eq!(
            &installed["version"], locked,
            "tools/browser/node_modules/{package} is not the locked version: `npm ci` in tools/browser"
        );
        let source = tools.join(format!("node_modules/{package}/{file}"));
        let source = std::fs::read(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        let target = assets.join(name);
        if std::env::var_os(UPDATE).is_some() {
            std::fs::write(&target, &source).unwrap_or_else(|e| panic!("{}: {e}", target.display()));
        }
        let committed = std::fs::read(&target).unwrap_or_default();
        assert!(
            committed == source,
            "gateway/assets/graphiql/{name} is not {package}@{locked}'s {file}; run the test again with {UPDATE}=1"
        );
    }
}

#[tokio::test]
async fn graphiql_runs_a_query_in_chromium() {
    let tools = browser_tools();
    let gw = lone_gateway().await;
    let png = if std::env::var_os(UPDATE).is_some() {
        workspace_file("docs/graphiql.png")
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("graphiql.png")
    };
    let _ = std::fs::remove_file(&png);
    let run = tokio::process::Command::new("node")
        .arg(tools.join("graphiql.mjs"))
        .arg(gw.url("/graphql"))
        .arg(&png)
        .arg(QUERY)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser test did not finish within 120 s")
        .expect("node runs (./dev graphiql installs Node.js when missing)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tools/browser/graphiql.mjs failed ({}):\n{stderr}", out.status);

    // The result pane shows what the gateway answers that query with.
    let shown: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the result pane is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let answer: Value = gw.post_json("/graphql", &json!({ "query": QUERY })).await.json().await.unwrap();
    assert!(shown["data"]["regions"].as_array().is_some_and(|r| !r.is_empty()), "{shown}");
    assert_eq!(shown["data"], answer["data"]);

    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000, "{}: not a screenshot", png.display());
}
