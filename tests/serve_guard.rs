//! What a web page the operator opens can do to `rebound serve` on loopback: a
//! cross-site form post (text/plain) and a DNS-rebinding page are refused and change
//! nothing; curl-like use works with and without a token. Real binary, real server.

#[path = "support/serve.rs"]
mod serve;

use serve::{Server, TOKEN};

const CONFIG: &str = r#"
[store]
url = "sqlite://rebound.db"
[api]
data_dir = "policies"
allowed_hosts = ["rebound.test", "Admin.Example.org:8443"]
[policy_limits]
cache_dir = "cache"
"#;

/// A text/plain form a page can post without the browser asking first: the name
/// `{"name":"evil",…,"x":"` and the value `"}` make a JSON body.
const FORM_BODY: &[u8] = br#"{"name":"evil","from":"a@example.org","subject":"s","text":"t","recipients":["victim@example.org"],"x":"="}"#;

/// The server started without a token (loopback only).
fn start_without_token(dir: &std::path::Path) -> Server {
    Server::start(dir, CONFIG, &[("REBOUND_API_TOKEN", "")])
}

fn error_of(r: &serve::Response) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_owned()
}

fn campaigns(server: &Server) -> serde_json::Value {
    let r = server.try_request("GET", "/campaigns", None, &[]).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[test]
fn serve_refuses_a_cross_site_form_post_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_without_token(dir.path());
    let origin = "http://evil.example";
    // What the browser sends for the page's form: its Origin, its type.
    let form = server
        .try_request(
            "POST",
            "/campaigns",
            Some(FORM_BODY),
            &[
                ("Content-Type", "text/plain"),
                ("Origin", origin),
                ("Sec-Fetch-Site", "cross-site"),
            ],
        )
        .unwrap();
    assert_eq!(form.status, 403, "{}", form.text());
    assert!(error_of(&form).contains("evil.example"), "{}", form.text());
    // An older browser sends no Origin: the type alone refuses it.
    let plain = server
        .try_request(
            "POST",
            "/campaigns",
            Some(FORM_BODY),
            &[("Content-Type", "text/plain")],
        )
        .unwrap();
    assert_eq!(plain.status, 415, "{}", plain.text());
    assert!(
        error_of(&plain).contains("application/json") && error_of(&plain).contains("text/plain"),
        "{}",
        plain.text()
    );
    for ct in [
        None,
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let headers: Vec<(&str, &str)> = ct.map(|c| ("Content-Type", c)).into_iter().collect();
        let r = server
            .try_request("POST", "/campaigns", Some(FORM_BODY), &headers)
            .unwrap();
        assert_eq!(r.status, 415, "{ct:?}: {}", r.text());
        let r = server
            .try_request("PUT", "/chain", Some(br#"{"order": []}"#), &headers)
            .unwrap();
        assert_eq!(r.status, 415, "{ct:?}: {}", r.text());
    }
    // A body-less post from a page (a rollback, a reactivation) is refused by its Origin.
    let r = server
        .try_request(
            "POST",
            "/recipients/victim@example.org/reactivate",
            None,
            &[("Origin", origin)],
        )
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.text());
    let r = server
        .try_request("POST", "/classify", Some(b"x"), &[("Origin", "null")])
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.text());
    let r = server
        .try_request(
            "POST",
            "/classify",
            Some(b"x"),
            &[("Sec-Fetch-Site", "same-site")],
        )
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.text());

    assert_eq!(
        campaigns(&server),
        serde_json::json!([]),
        "nothing was created"
    );
    let chain = server.try_request("GET", "/chain", None, &[]).unwrap();
    assert_eq!(
        chain.json(),
        serde_json::json!([]),
        "the chain is unchanged"
    );
}

#[test]
fn serve_refuses_a_rebinding_host() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_without_token(dir.path());
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let evil = format!("evil.example:{port}");
    for (method, path, body) in [
        ("GET", "/recipients", None),
        ("GET", "/healthz", None),
        ("GET", "/nope", None),
        ("POST", "/campaigns", Some(FORM_BODY)),
    ] {
        // After the rebinding the page is same-origin with itself: its Origin matches.
        let r = server
            .try_request(
                method,
                path,
                body,
                &[
                    ("Host", &evil),
                    ("Origin", &format!("http://{evil}")),
                    ("Content-Type", "application/json"),
                ],
            )
            .unwrap();
        assert_eq!(r.status, 421, "{method} {path}: {}", r.text());
        let error = error_of(&r);
        assert!(
            error.contains("evil.example") && error.contains("allowed_hosts"),
            "{error}"
        );
    }
    for host in [
        "localhost.evil.example",
        "127.0.0.1.evil.example",
        "",
        "evil:x",
    ] {
        let r = server
            .try_request("GET", "/recipients", None, &[("Host", host)])
            .unwrap();
        assert_eq!(r.status, 421, "Host {host:?}: {}", r.text());
    }
    assert_eq!(
        campaigns(&server),
        serde_json::json!([]),
        "nothing was created"
    );
}

#[test]
fn serve_takes_curl_like_requests_with_and_without_a_token() {
    let campaign = |name: &str| {
        serde_json::json!({
            "name": name, "from": "news@example.org", "subject": "s", "text": "t",
            "recipients": ["a@example.org"],
        })
        .to_string()
    };
    for with_token in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let env: &[(&str, &str)] = if with_token {
            &[]
        } else {
            &[("REBOUND_API_TOKEN", "")]
        };
        let server = Server::start(dir.path(), CONFIG, env);
        let port = server.addr.rsplit(':').next().unwrap().to_owned();
        let auth = format!("Bearer {TOKEN}");
        let mut base: Vec<(&str, &str)> = vec![("Content-Type", "application/json; charset=utf-8")];
        if with_token {
            base.push(("Authorization", &auth));
        }
        let created = server
            .try_request(
                "POST",
                "/campaigns",
                Some(campaign("one").as_bytes()),
                &base,
            )
            .unwrap();
        assert_eq!(
            created.status,
            201,
            "token {with_token}: {}",
            created.text()
        );

        // Other names for loopback, the configured names (any port), and an Origin that
        // is the Host's own (a page served by this server).
        let hosts = [
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
            "rebound.test".to_owned(),
            "REBOUND.TEST:9999".to_owned(),
            "admin.example.org".to_owned(),
        ];
        for host in &hosts {
            let mut headers = base.clone();
            headers.push(("Host", host));
            let r = server
                .try_request("GET", "/recipients", None, &headers)
                .unwrap();
            assert_eq!(r.status, 200, "Host {host}: {}", r.text());
        }
        let origin = format!("http://localhost:{port}");
        let host = format!("localhost:{port}");
        let mut headers = base.clone();
        headers.extend([
            ("Host", host.as_str()),
            ("Origin", origin.as_str()),
            ("Sec-Fetch-Site", "same-origin"),
        ]);
        let r = server
            .try_request(
                "POST",
                "/campaigns",
                Some(campaign("two").as_bytes()),
                &headers,
            )
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        // Raw bodies keep taking what curl --data-binary sends.
        let mut headers: Vec<(&str, &str)> =
            vec![("Content-Type", "application/x-www-form-urlencoded")];
        if with_token {
            headers.push(("Authorization", &auth));
        }
        let r = server
            .try_request(
                "POST",
                "/classify",
                Some(b"Subject: hi\n\nhello\n"),
                &headers,
            )
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            campaigns_with(&server, with_token).as_array().map(Vec::len),
            Some(2)
        );
    }
}

fn campaigns_with(server: &Server, with_token: bool) -> serde_json::Value {
    if with_token {
        server.request("GET", "/campaigns", None).json()
    } else {
        campaigns(server)
    }
}
