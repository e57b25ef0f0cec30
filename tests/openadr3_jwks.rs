//! Tokens of an external OAuth2 issuer: the VTN fetches the issuer's JWKS from an HTTP
//! server in the test, accepts ES256 tokens the test signs with a published key (roles
//! from the configured claim), fetches the keys again when a token names a key it has not
//! seen (key rollover), and answers 401 for a token signed with the wrong key, expired,
//! for another audience or issuer, or naming a key the issuer does not publish; built-in
//! tokens keep working beside it.

mod common;

use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::TestDb;
use common::openadr3::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

on_both_backends!(external_issuer_tokens);

const ISS: &str = "https://idp.example/realm";
const AUD: &str = "switchyard-vtn";

/// An EC P-256 key and its JWK.
struct Key {
    encoding: EncodingKey,
    jwk: Value,
}

fn key(kid: &str) -> Key {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = kp.public_key_raw();
    // An uncompressed point: 0x04 || x || y.
    assert_eq!(raw.len(), 65);
    Key {
        encoding: EncodingKey::from_ec_der(&kp.serialize_der()),
        jwk: json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..])}),
    }
}

/// The issuer's key server: what it publishes and how often it was asked.
#[derive(Clone, Default)]
struct Jwks {
    published: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

fn token(k: &Key, kid: &str, claims: Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, &claims, &k.encoding).unwrap()
}

fn claims(sub: &str, roles: Value) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({"sub": sub, "roles": roles, "iss": ISS, "aud": AUD, "iat": now, "exp": now + 600})
}

async fn external_issuer_tokens(db: TestDb) {
    let jwks = Jwks::default();
    let k1 = key("k1");
    let k2 = key("k2");
    let rogue = key("k1");
    jwks.published.lock().unwrap().push(k1.jwk.clone());
    let served = jwks.clone();
    let app = Router::new().route(
        "/jwks.json",
        get(move || {
            let j = served.clone();
            async move {
                j.fetches.fetch_add(1, Ordering::SeqCst);
                axum::Json(json!({"keys": *j.published.lock().unwrap()}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (server, base) = start(&db, |c| {
        let x = &mut c.openadr3.external_issuer;
        x.jwks_url = jwks_url;
        x.issuer = ISS.into();
        x.audience = AUD.into();
        x.min_refresh_seconds = 0;
    })
    .await;
    let record = Record::default();
    let builtin = Oadr::login(&base, BL, &record).await;
    let as_token = |t: String| builtin.with_token(&t);

    // The issuer's BL writes programs; its VEN reads but may not write them.
    let bl = as_token(token(&k1, "k1", claims("idp-bl", json!(["bl", "other"]))));
    let program = bl
        .create(
            "/programs",
            json!({"programName": "external", "intervalPeriod": {"start": "2030-01-01T00:00:00Z", "duration": "P1Y"}}),
        )
        .await;
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1);
    let ven = as_token(token(&k1, "k1", claims("idp-ven", json!("ven"))));
    assert_eq!(
        ids(&ven.ok("/programs").await),
        [program["id"].as_str().unwrap()]
    );
    let (s, _) = ven
        .send(
            reqwest::Method::POST,
            "/programs",
            Some(json!({"programName": "nope"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Keys are cached: no fetch per request.
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1);
    // The built-in token endpoint's tokens still work.
    assert_eq!(builtin.ok("/programs").await.as_array().unwrap().len(), 1);

    let now = jsonwebtoken::get_current_timestamp();
    let mut expired = claims("idp-bl", json!(["bl"]));
    expired["exp"] = json!(now - 5);
    expired["iat"] = json!(now - 600);
    let mut other_aud = claims("idp-bl", json!(["bl"]));
    other_aud["aud"] = json!("someone-else");
    let mut other_iss = claims("idp-bl", json!(["bl"]));
    other_iss["iss"] = json!("https://evil.example");
    for (t, why) in [
        (
            token(&rogue, "k1", claims("idp-bl", json!(["bl"]))),
            "signature",
        ),
        (token(&k1, "k1", expired), "expired"),
        (token(&k1, "k1", other_aud), "aud"),
        (token(&k1, "k1", other_iss), "issuer"),
        (
            token(&k2, "k2", claims("idp-bl", json!(["bl"]))),
            "does not publish",
        ),
        ("not.a.jwt".into(), "malformed"),
    ] {
        let (s, p) = as_token(t).get("/programs").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{why}: {p}");
        assert!(p["detail"].as_str().unwrap().contains(why), "{why}: {p}");
    }
    // The unknown kid made the VTN look again (once); nothing was written by any of them.
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);
    assert_eq!(bl.ok("/programs").await.as_array().unwrap().len(), 1);

    // Without a role, or with both, the token is refused.
    for roles in [json!([]), json!(["bl", "ven"])] {
        let (s, _) = as_token(token(&k1, "k1", claims("idp-x", roles)))
            .get("/programs")
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }

    // The issuer rolls over to k2: the first token naming it brings a fresh fetch.
    jwks.published.lock().unwrap().push(k2.jwk.clone());
    let bl2 = as_token(token(&k2, "k2", claims("idp-bl", json!(["bl"]))));
    assert_eq!(bl2.ok("/programs").await.as_array().unwrap().len(), 1);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 3);
    server.stop().await.unwrap();
}
