//! The OpenAPI 3.1 document of a service's HTTP API, generated from the handlers that serve it.
//!
//! A service registers its routes on a utoipa-axum [`OpenApiRouter`] with `routes!`: the path
//! and method of each route are taken from its handler's `#[utoipa::path]`, so what is
//! documented is what is routed. [`app`] adds the ops endpoints and `/openapi.json` (documented
//! the same way), finishes the document and serves it; [`document`] builds the very same
//! document without serving, for the test that keeps `openapi/<service>.json` current.
//!
//! What every operation has in common is added here once ([`finish`]), not in each annotation:
//! the optional `x-correlation-id` request header, and the `x-correlation-id` response header
//! every answer carries ([`crate::correlation::middleware`] sets it, errors and 404s included).
//! Operations that need a token say so with `security(("bearerAuth" = []))`: an EdDSA JWT
//! from accounts' `POST /api/v1/login`.
//!
//! The error answers several operations share are `components/responses`, named in an
//! annotation's `responses(...)` by the unit types below ([`BadRequest`], [`Unauthorized`],
//! …, and groups of them such as [`JsonBody`] and [`DependencyFailures`]; a service declares
//! its own groups with [`response_group!`](crate::response_group)); a document holds those its
//! operations name. Each is described by a real
//! [`ApiError`]: its status, its example body and whether it carries `Retry-After` come from
//! that error, so they cannot drift from what the service sends.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::{Extension, Router};
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, ContentBuilder, InfoBuilder, OpenApi, Ref, RefOr, Required};
use utoipa::{IntoResponses, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody, FieldError};
use crate::ops::Readiness;

/// Where every service serves its document.
pub const PATH: &str = "/openapi.json";
/// The security scheme of access tokens, as `security(...)` names it.
pub const BEARER: &str = "bearerAuth";

/// The component names of the two headers this module adds.
const CORRELATION_ID: &str = crate::correlation::HEADER;
const RETRY_AFTER: &str = "Retry-After";

/// What the document says about the service itself.
#[derive(Debug, Clone, Copy)]
pub struct About {
    pub title: &'static str,
    /// The service's crate version (`env!("CARGO_PKG_VERSION")`).
    pub version: &'static str,
    /// A paragraph or two in Markdown: what the API is for.
    pub description: &'static str,
}

/// The service's documented `routes` with the ops endpoints and `/openapi.json`, wrapped like
/// every service ([`crate::http::app`]): the document served is [`document`]'s.
pub fn app(routes: OpenApiRouter, readiness: Readiness, about: &About) -> Router {
    let (router, doc) = assemble(routes, readiness);
    let served = Served(Bytes::from(to_json(&finish(doc, about))));
    crate::http::wrap(router.layer(Extension(served)))
}

/// The document [`app`] serves for `routes`, built without state or listeners.
pub fn document<S: Clone + Send + Sync + 'static>(routes: OpenApiRouter<S>, about: &About) -> OpenApi {
    finish(assemble(routes, Readiness::default()).1, about)
}

/// The document as committed and served: pretty JSON ending in a newline.
pub fn to_json(doc: &OpenApi) -> String {
    let mut json = serde_json::to_string_pretty(doc).unwrap_or_default();
    json.push('\n');
    json
}

/// The one place a service's routes meet platform's, for serving and for [`document`] alike.
fn assemble<S: Clone + Send + Sync + 'static>(routes: OpenApiRouter<S>, readiness: Readiness) -> (Router<S>, OpenApi) {
    routes.merge(crate::ops::routes().with_state(Arc::new(readiness))).routes(routes!(openapi_json)).split_for_parts()
}

/// The rendered document, rendered once when the app is built.
#[derive(Debug, Clone)]
struct Served(Bytes);

/// This document: the service's HTTP API in OpenAPI 3.1.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", operation_id = "openapi", responses(
    (status = 200, description = "The OpenAPI 3.1 document of this service", body = serde_json::Value),
))]
async fn openapi_json(Extension(Served(json)): Extension<Served>) -> axum::response::Response {
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// Adds what every operation shares (see the module docs) and the service's own [`About`].
pub fn finish(mut doc: OpenApi, about: &About) -> OpenApi {
    doc.info = InfoBuilder::new()
        .title(about.title)
        .version(about.version)
        .description(Some(about.description))
        .license(Some(utoipa::openapi::License::new("MIT OR Apache-2.0")))
        .build();
    let components = doc.components.get_or_insert_with(Components::new);
    let mut schemas = Vec::new();
    <ErrorBody as ToSchema>::schemas(&mut schemas);
    schemas.push((<ErrorBody as ToSchema>::name().into_owned(), <ErrorBody as utoipa::PartialSchema>::schema()));
    schemas.push((<FieldError as ToSchema>::name().into_owned(), <FieldError as utoipa::PartialSchema>::schema()));
    components.schemas.extend(schemas);
    components.headers.insert(CORRELATION_ID.into(), RefOr::T(correlation_header()));
    components.headers.insert(RETRY_AFTER.into(), RefOr::T(retry_after_header()));
    components.parameters.insert(CORRELATION_ID.into(), RefOr::T(correlation_parameter()));
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "An access token from accounts' `POST /api/v1/login` (EdDSA JWT), sent as \
                     `Authorization: Bearer <token>`. Missing, malformed, expired or forged: 401.",
                ))
                .build(),
        ),
    );
    let mut named = std::collections::BTreeSet::new();
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            op.parameters
                .get_or_insert_with(Vec::new)
                .push(RefOr::Ref(Ref::new(format!("#/components/parameters/{CORRELATION_ID}"))));
            for response in op.responses.responses.values_mut() {
                match response {
                    RefOr::T(response) => {
                        response.headers.insert(CORRELATION_ID.into(), header_ref(CORRELATION_ID));
                    }
                    RefOr::Ref(r) => {
                        named.insert(r.ref_location.clone());
                    }
                }
            }
        }
    }
    let components = doc.components.get_or_insert_with(Components::new);
    for (name, mut response) in shared_responses() {
        if named.contains(&format!("#/components/responses/{name}")) {
            response.headers.insert(CORRELATION_ID.into(), header_ref(CORRELATION_ID));
            components.responses.insert(name.into(), RefOr::T(response));
        }
    }
    doc
}

/// Every operation of a path, whatever its method.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

fn header_ref(name: &str) -> RefOr<Header> {
    RefOr::Ref(Ref::new(format!("#/components/headers/{name}")))
}

/// A header every answer of its kind has. utoipa's `Header` has no `required` field, so the
/// flag goes where the serializer flattens unknown keys.
fn required_header(description: &str, schema: ObjectBuilder) -> Header {
    let mut header = HeaderBuilder::new().description(Some(description)).schema(Some(schema)).build();
    header.extensions.get_or_insert_default().insert("required".into(), true.into());
    header
}

fn correlation_header() -> Header {
    required_header(
        "The request's correlation id: the caller's own when well formed, otherwise a new one. Logs \
         and the events the request causes carry it too.",
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(crate::correlation::PATTERN))
            .min_length(Some(1))
            .max_length(Some(crate::correlation::MAX_LEN)),
    )
}

fn retry_after_header() -> Header {
    required_header(
        "Seconds to wait before trying again.",
        ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)),
    )
}

fn correlation_parameter() -> Parameter {
    ParameterBuilder::new()
        .name(CORRELATION_ID)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Your id for this request, to find it in logs and events. One of 1 to 128 characters of \
             `[A-Za-z0-9._:-]` is kept and sent back; any other value is replaced by a new id, \
             never refused.",
        ))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

/// An error answer in the [`ErrorBody`] shape, with `example`'s body, and `Retry-After` when
/// `example` sends one.
fn error_response(description: &str, example: &ApiError) -> Response {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(<ErrorBody as ToSchema>::name())))
        .example(Some(example.body()))
        .build();
    let mut response = ResponseBuilder::new().description(description).content("application/json", content).build();
    if example.retry_after().is_some() {
        response.headers.insert(RETRY_AFTER.into(), header_ref(RETRY_AFTER));
    }
    response
}

/// Declares the shared error answers: a unit type per answer for `responses(...)`, and the
/// list [`finish`] puts in `components/responses`. The status of each is its example's.
macro_rules! shared_errors {
    ($($(#[$doc:meta])* $name:ident: $description:literal, $example:expr;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug)]
            pub struct $name;

            impl $name {
                fn example() -> ApiError {
                    $example
                }
            }

            impl IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    let status = Self::example().status().as_u16().to_string();
                    BTreeMap::from([(status, RefOr::Ref(Ref::from_response_name(stringify!($name))))])
                }
            }
        )*

        fn shared_responses() -> Vec<(&'static str, Response)> {
            vec![$((stringify!($name), error_response($description, &$name::example()))),*]
        }
    };
}

shared_errors! {
    /// 400: input that does not parse. Every operation with parameters or a body has it.
    BadRequest: "The request does not parse: `VALIDATION_ERROR` names every bad field (body, \
        query, path or header) in `details.fields`; `BAD_REQUEST` when it cannot be read at all \
        (malformed JSON or query string).",
        ApiError::field("limit", "must be 1 to 100");
    /// 401: the operation needs a valid access token.
    Unauthorized: "No valid access token: missing, malformed, expired, or not signed by accounts.",
        ApiError::Unauthorized("token expired".into());
    /// 403: the token is valid but its holder may not do this.
    Forbidden: "The caller's role or identity does not allow this.",
        ApiError::Forbidden("only the order's customer or an ADMIN may see it".into());
    /// 404: no such resource.
    NotFound: "No such resource (an id this system never handed out is not found either).",
        ApiError::NotFound("no order with id 0193e7a4-8d6c-7bb0-8000-3f2a1c9e5d10".into());
    /// 413: a body over [`crate::http::DEFAULT_BODY_LIMIT`].
    PayloadTooLarge: "The body is larger than the service accepts.",
        ApiError::PayloadTooLarge(format!("request body is larger than {} bytes", crate::http::DEFAULT_BODY_LIMIT));
    /// 415: a body without `Content-Type: application/json`.
    UnsupportedMediaType: "The body is not sent as `application/json`.",
        ApiError::UnsupportedMediaType("expected a body with Content-Type: application/json".into());
    /// 429: throttled; `Retry-After` says for how long.
    TooManyRequests: "Too many attempts; `Retry-After` says when to try again.",
        ApiError::TooManyRequests { message: "too many failed logins; try again in 60 s".into(), retry_after_secs: 60 };
    /// 503: a dependency is down or slow; safe to retry after `Retry-After`.
    Unavailable: "A dependency is down or slow (or the request ran out of time); safe to retry \
        after `Retry-After`.",
        ApiError::Unavailable { message: "the accounts database is unavailable; retry shortly".into(), retry_after_secs: 2 };
    /// 500: a fault of the service; the cause is logged, never shown. For every operation that
    /// reads a database or another service.
    Internal: "A fault of the service. The cause is in its log (find it by the correlation id).",
        ApiError::internal(anyhow::anyhow!("a cause that stays in the log"));
}

#[doc(hidden)]
pub use utoipa as __utoipa;

/// Declares a unit type for an annotation's `responses(...)` that stands for every answer of
/// the types it names: a list several operations share, written once.
///
/// ```ignore
/// platform::response_group! {
///     /// What any request naming one order may get.
///     pub struct OrderAccess = BadRequest, Unauthorized, Forbidden, NotFound, DependencyFailures;
/// }
/// ```
#[macro_export]
macro_rules! response_group {
    ($(#[$doc:meta])* $vis:vis struct $name:ident = $($part:ty),+ $(,)?;) => {
        $(#[$doc])*
        #[derive(Debug)]
        $vis struct $name;

        impl $crate::openapi::__utoipa::IntoResponses for $name {
            fn responses() -> ::std::collections::BTreeMap<
                String,
                $crate::openapi::__utoipa::openapi::RefOr<$crate::openapi::__utoipa::openapi::response::Response>,
            > {
                let mut all = ::std::collections::BTreeMap::new();
                $(all.extend(<$part as $crate::openapi::__utoipa::IntoResponses>::responses());)+
                all
            }
        }
    };
}

crate::response_group! {
    /// The answers any JSON body can get before its handler runs (see [`crate::http::Json`]):
    /// 400 for malformed JSON or a bad field, 413 and 415.
    pub struct JsonBody = BadRequest, PayloadTooLarge, UnsupportedMediaType;
}

crate::response_group! {
    /// What an operation that reads a database or calls another service may get besides its
    /// own answers: 503 while that dependency is down or slow, 500 on a fault.
    pub struct DependencyFailures = Unavailable, Internal;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names every shared answer, as a service's annotation would.
    #[utoipa::path(
        get,
        path = "/all",
        responses(JsonBody, Unauthorized, Forbidden, NotFound, TooManyRequests, Unavailable, Internal)
    )]
    async fn all() {}

    #[test]
    fn shared_answers_take_status_and_headers_from_their_error() {
        let about = About { title: "t", version: "0", description: "d" };
        let doc = document(OpenApiRouter::<()>::default().routes(routes!(all)), &about);
        let json = serde_json::to_value(&doc).unwrap();
        let components = &json["components"];
        assert!(components["responses"]["Unavailable"]["headers"][RETRY_AFTER].is_object(), "{json}");
        assert!(components["responses"]["TooManyRequests"]["headers"][RETRY_AFTER].is_object(), "{json}");
        assert!(components["responses"]["NotFound"]["headers"].get(RETRY_AFTER).is_none(), "{json}");
        assert!(components["responses"]["Internal"]["headers"][CORRELATION_ID].is_object(), "{json}");
        assert_eq!(components["headers"][CORRELATION_ID]["required"], true, "{json}");
        let statuses: Vec<&String> = json["paths"]["/all"]["get"]["responses"].as_object().unwrap().keys().collect();
        assert_eq!(statuses, ["400", "401", "403", "404", "413", "415", "429", "500", "503"]);
        assert_eq!(
            json["paths"]["/healthz"]["get"]["responses"]["200"]["headers"][CORRELATION_ID]["$ref"],
            format!("#/components/headers/{CORRELATION_ID}")
        );
    }

    #[test]
    fn a_document_holds_only_the_shared_answers_it_names() {
        let about = About { title: "t", version: "0", description: "d" };
        let doc = document(OpenApiRouter::<()>::default(), &about);
        assert!(doc.components.unwrap_or_default().responses.is_empty());
    }
}
