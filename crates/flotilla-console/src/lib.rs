//! The web console: a single-page application (console/, React + Vite) whose build output
//! (`console/dist`, made by `scripts/up` and `scripts/test`) is embedded in the binary and
//! served at `/`.
//!
//! - `/assets/…` are content-hashed: cached for a year, immutable.
//! - Any other path the API does not own is a page of the application: `index.html`
//!   (never cached, so a new build is picked up at once), which routes in the browser.
//! - Every answer carries a Content-Security-Policy allowing only this origin's scripts.
//!
//! When the binary was built without the console, `/` says so and how to build it.

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../../console/dist"]
#[allow_missing = true]
struct Assets;

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const NOT_BUILT: &str = "<!doctype html><title>Flotilla</title><h1>The console is not built</h1>\
<p>This binary was built without <code>console/dist</code>. Run <code>scripts/up</code> (it runs \
<code>npm ci &amp;&amp; npm run build</code> in <code>console/</code>), then build the server again. \
The API is at <code>/api/v1</code>.</p>";

/// Whether the console was embedded.
pub fn is_built() -> bool {
    Assets::get("index.html").is_some()
}

fn with_headers(mut response: Response, cache: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

/// The answer to a GET or HEAD of `uri` (a path the API does not own).
pub fn respond(method: &Method, uri: &Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let path = uri.path().trim_start_matches('/');
    if let Some(file) = Assets::get(path).filter(|_| !path.is_empty()) {
        let immutable = path.starts_with("assets/");
        let mime = file.metadata.mimetype().to_string();
        let mut response = Body::from(file.data.into_owned()).into_response();
        if let Ok(value) = HeaderValue::from_str(&mime) {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        let cache = if immutable { "public, max-age=31536000, immutable" } else { "no-cache" };
        return with_headers(response, cache);
    }
    if path.starts_with("assets/") {
        // A hashed asset that is not there (an old page asking after a new build).
        return with_headers(StatusCode::NOT_FOUND.into_response(), "no-cache");
    }
    let page = match Assets::get("index.html") {
        Some(index) => index.data.into_owned(),
        None => NOT_BUILT.as_bytes().to_vec(),
    };
    let mut response = Body::from(page).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    with_headers(response, "no-cache")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_fall_back_to_the_application_and_assets_do_not() {
        let page = respond(&Method::GET, &Uri::from_static("/projects/shop/applications"));
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(page.headers()[header::CACHE_CONTROL], "no-cache");
        assert!(page.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("default-src 'self'"));
        let missing = respond(&Method::GET, &Uri::from_static("/assets/index-00000000.js"));
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(respond(&Method::POST, &Uri::from_static("/")).status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
