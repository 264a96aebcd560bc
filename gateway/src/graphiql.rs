//! GraphiQL served by the gateway itself: `GET /graphql` is the page, `GET /graphiql/{name}`
//! its scripts and stylesheets. Nothing comes from a CDN, so the IDE works on a machine
//! without internet (async-graphql's `GraphiQLSource` loads React and GraphiQL from unpkg).
//!
//! # The assets
//! `gateway/assets/graphiql/` holds our page ([`PAGE`], `init.js`, `page.css`) and, copied
//! byte for byte from the npm packages that `tools/browser/package-lock.json` pins, the
//! browser builds of GraphiQL 4 (`graphiql.min.js`, `graphiql.min.css`, fonts inlined) and of
//! its React 18 peers. `include_bytes!` puts them in the binary.
//!
//! They are committed (about 1.6 MB, 0.66 MB gzipped) rather than built by npm at setup time
//! or in a build script, because that is what keeps every way of building the gateway whole:
//! `cargo build` here, in CI and in `compose/Dockerfile` needs neither node nor the registry,
//! and no binary can serve a page whose scripts were never built. They are the packages' own
//! files, not a bundler's output, so a test checks them against the locked packages
//! (`gateway/tests/api/graphiql.rs`; `UPDATE_GRAPHIQL=1` copies them again after an upgrade).
//!
//! GraphiQL 4 is the last major with a prebuilt browser build (UMD, deprecated upstream);
//! React 18 is the last with one too. GraphiQL 5 ships ES modules around the Monaco editor
//! and its web workers: it needs a bundler, and comes to about 7 MB.
//!
//! # Caching and policy
//! Every answer carries an `ETag` (a hash of the bytes) and `Cache-Control: no-cache`, so a
//! browser revalidates and gets a 304 until the gateway ships other assets. The page carries a
//! Content-Security-Policy that allows this origin's scripts, styles and requests only: a
//! browser refuses anything external even if an asset asked for it.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Where the assets are served; the page refers to them relative to `/graphql`.
pub const ASSETS_PATH: &str = "/graphiql";

/// The page's policy: scripts, styles, fonts, images and requests from this origin (fonts and
/// icons inlined as `data:` URLs), and nothing else.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     font-src 'self' data:; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One file the page loads.
#[derive(Debug)]
pub struct Asset {
    /// Its name under [`ASSETS_PATH`].
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    /// The npm package and the path in it the file is a copy of; `None` for our own files.
    pub npm: Option<(&'static str, &'static str)>,
}

macro_rules! asset {
    ($name:literal, $content_type:expr, $npm:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../assets/graphiql/", $name)),
            npm: $npm,
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The page, served at `GET /graphql`.
pub const PAGE: Asset = asset!("index.html", "text/html; charset=utf-8", None);

/// Every file the page loads, in the order it loads them.
pub const ASSETS: &[Asset] = &[
    asset!("graphiql.min.css", CSS, Some(("graphiql", "graphiql.min.css"))),
    asset!("page.css", CSS, None),
    asset!("react.production.min.js", JS, Some(("react", "umd/react.production.min.js"))),
    asset!("react-dom.production.min.js", JS, Some(("react-dom", "umd/react-dom.production.min.js"))),
    asset!("graphiql.min.js", JS, Some(("graphiql", "graphiql.min.js"))),
    asset!("init.js", JS, None),
];

/// The `ETag` of the page and of each asset, in [`ASSETS`] order after the page's: computed
/// once, at the first request.
static ETAGS: LazyLock<Vec<HeaderValue>> =
    LazyLock::new(|| std::iter::once(&PAGE).chain(ASSETS).map(|a| etag(a.bytes)).collect());

fn etag(bytes: &[u8]) -> HeaderValue {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    // Hex digits and quotes only: always a valid header value.
    HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish())).unwrap_or(HeaderValue::from_static("\"\""))
}

/// The asset routes; the page itself is the GET of `/graphql` ([`page`]).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route(&format!("{ASSETS_PATH}/{{name}}"), get(asset))
}

/// `GET /graphql`: the GraphiQL page.
pub async fn page(headers: HeaderMap) -> Response {
    let mut response = serve(&PAGE, &ETAGS[0], &headers);
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    response
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.name == name) {
        Some(i) => serve(&ASSETS[i], &ETAGS[i + 1], &headers),
        None => {
            platform::error::ApiError::NotFound(format!("no GraphiQL asset named {}", platform::error::shown(&name)))
                .into_response()
        }
    }
}

/// `asset` with its validators, or a 304 when the request already holds this version.
fn serve(asset: &Asset, etag: &HeaderValue, request: &HeaderMap) -> Response {
    let cache = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim().trim_start_matches("W/") == etag.to_str().unwrap_or_default() || tag.trim() == "*");
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (cache, [(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type))], asset.bytes).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_asset_has_a_distinct_name_and_etag() {
        let mut names: Vec<_> = ASSETS.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len());
        let mut tags: Vec<_> = ETAGS.iter().map(|t| t.to_str().unwrap_or_default().to_owned()).collect();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len() + 1);
    }

    #[test]
    fn a_matching_if_none_match_is_a_304() {
        let tag = etag(b"x");
        let mut request = HeaderMap::new();
        request.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\", W/\"nope\""));
        assert_eq!(serve(&PAGE, &tag, &request).status(), StatusCode::OK);
        request.append(header::IF_NONE_MATCH, tag.clone());
        assert_eq!(serve(&PAGE, &tag, &request).status(), StatusCode::NOT_MODIFIED);
    }
}
